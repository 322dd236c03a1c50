"""Latency benchmarks, measured side by side in one run (medians of interleaved rounds).

    python tools/benchmark.py backbone [--variants s0 s1] [--sizes 224 320] [--rounds 50]
    python tools/benchmark.py {detector,segmentor,export} ...   (see --help of each)

Prints a markdown table and writes it, with the raw medians, as JSON (``--out``).
"""
import argparse
import importlib
import pkgutil
import sys

import mobileone_dense  # noqa: F401  (registers MobileOne)
import mobileone_dense.benchmark as benchmarks
from mobileone_dense.benchmark.common import save_json

# Every module of mobileone_dense.benchmark with add_arguments() and run() is a subcommand.
SUBCOMMANDS = {m.name: f'{benchmarks.__name__}.{m.name}'
               for m in pkgutil.iter_modules(benchmarks.__path__) if m.name != 'common'}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='what', required=True)
    modules = {}
    for name, module in SUBCOMMANDS.items():
        modules[name] = importlib.import_module(module)
        p = sub.add_parser(name, help=modules[name].__doc__.splitlines()[0])
        p.add_argument('--out', default=f'work_dirs/benchmark/{name}.json',
                       help='where the JSON goes (default: %(default)s)')
        modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    result = modules[args.what].run(args)
    print(f'wrote {save_json(result, args.out)}')


if __name__ == '__main__':
    sys.exit(main())
