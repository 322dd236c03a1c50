"""Latency and training-throughput benchmarks, measured side by side (interleaved rounds).

    python tools/benchmark.py latency [--groups backbone ssdlite deeplabv3] [--variants s0 s1]
                                      [--runtimes train pytorch onnx litert litert_int8
                                                  mediapipe mediapipe_int8] ...
    python tools/benchmark.py train [--variants s0] [--seg-variants s0] [--rounds 5] ...
    python tools/benchmark.py coreml [--configs CONFIG ...]

Each prints a markdown table and writes it, with the raw figures, as JSON (``--out``, default
work_dirs/benchmark/<subcommand>.json); ``latency`` also draws a picture.
"""
import argparse

import mobileone_dense  # noqa: F401  (registers MobileOne, fixes mmdet's SSDHead)
from mobileone_dense.benchmark import coreml, latency, train
from mobileone_dense.benchmark.common import WORK_DIR, save_json
from mobileone_dense.utils import cli

SUBCOMMANDS = {'latency': latency, 'train': train, 'coreml': coreml}


def main(argv=None) -> None:
    parser = cli.tool_parser(__doc__)
    sub = parser.add_subparsers(dest='what', required=True)
    for name, module in SUBCOMMANDS.items():
        summary = ' '.join(module.__doc__.split('\n\n')[0].split()).split('``: ', 1)[-1]
        p = sub.add_parser(name, help=summary, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument('--out', default=str(WORK_DIR / f'{name}.json'),
                       help='where the JSON goes (default: %(default)s)')
        module.add_arguments(p)
    args = parser.parse_args(argv)
    result = SUBCOMMANDS[args.what].run(args)
    print(f'wrote {save_json(result, args.out)}')


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
