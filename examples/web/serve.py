"""Serves the web demo on localhost: the files of several folders under one URL, the first
folder that has a path wins (this folder, with its node_modules, then an export folder with
model_int8.tflite / model.tflite, then anything else, e.g. images).

    python examples/web/serve.py [--port 8000] [--quiet] examples/web EXPORT_DIR [IMAGES_DIR]

Only the standard library; binds 127.0.0.1 (the page needs a real origin, not file://, for
its ES modules and MediaPipe's WASM files).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import sys
from pathlib import Path

TYPES = {'.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
         '.tflite': 'application/octet-stream', '.json': 'application/json'}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def __init__(self, *args, roots: list[Path], quiet: bool, **kwargs):
        self.roots, self.quiet = roots, quiet
        super().__init__(*args, directory=str(roots[0]), **kwargs)

    def translate_path(self, path: str) -> str:
        first = None
        for root in self.roots:
            self.directory = str(root)
            candidate = super().translate_path(path)
            first = first or candidate
            if Path(candidate).exists():
                return candidate
        return first

    def end_headers(self):
        self.send_header('Cache-Control', 'no-store')  # a re-exported model shows at once
        super().end_headers()

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('roots', nargs='+', type=Path, help='folders to serve, first wins')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--quiet', action='store_true', help='no line per request')
    parser.add_argument('--page', default='', help='path and query of the URL to print, '
                        'e.g. "?model=model.tflite&image=000000.jpg"')
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.roots if not r.is_dir()]
    if missing:
        sys.exit(f'error: no folder {", ".join(missing)} to serve')
    roots = [r.resolve() for r in args.roots]
    handler = functools.partial(Handler, roots=roots, quiet=args.quiet)
    try:
        server = http.server.ThreadingHTTPServer(('127.0.0.1', args.port), handler)
    except OSError as error:
        sys.exit(f'error: cannot listen on 127.0.0.1:{args.port} ({error.strerror}): choose '
                 f'another port with --port (PORT=... for make web-demo)')
    with server:
        print(f'serving {" + ".join(map(str, roots))}\n'
              f'open http://127.0.0.1:{server.server_port}/{args.page.lstrip("/")}', flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == '__main__':
    main()
