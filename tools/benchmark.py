"""Latency and throughput benchmarks, measured side by side in one run (interleaved rounds).

    python tools/benchmark.py backbone [--variants s0 s1] [--sizes 224 320] [--rounds 50]
    python tools/benchmark.py {detector,segmentor,export,train,deploy,coreml} ...  (--help)

Prints a markdown table and writes it, with the raw figures, as JSON (``--out``).
"""
import argparse
import importlib

import mobileone_dense  # noqa: F401  (registers MobileOne, applies the compat fixes)
from mobileone_dense.benchmark.common import WORK_DIR, save_json
from mobileone_dense.utils import cli

#: The subcommands: each names a module of mobileone_dense.benchmark with add_arguments(parser)
#: and run(args) -> dict.
SUBCOMMANDS = ('backbone', 'detector', 'segmentor', 'export', 'train', 'deploy', 'coreml')


def main(argv=None) -> None:
    parser = cli.tool_parser(__doc__)
    sub = parser.add_subparsers(dest='what', required=True)
    modules = {}
    for name in SUBCOMMANDS:
        module = modules[name] = importlib.import_module(f'mobileone_dense.benchmark.{name}')
        # the docstring's first paragraph, without its ``tools/benchmark.py NAME``: prefix
        summary = ' '.join(module.__doc__.split('\n\n')[0].split()).split('``: ', 1)[-1]
        p = sub.add_parser(name, help=summary.replace('%', '%%'), description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        out_help = f'where the JSON goes (default: {WORK_DIR / name}.json'
        if name == 'train':
            out_help += '; with --blocks / --optim: train_blocks.json / train_optim.json'
        p.add_argument('--out', default=None, help=out_help + ')')
        module.add_arguments(p)
    args = parser.parse_args(argv)
    result = modules[args.what].run(args)
    print(f'wrote {save_json(result, args.out or default_out(args))}')


def default_out(args: argparse.Namespace):
    """WORK_DIR/NAME.json; a sub-benchmark of ``train`` (``--blocks``, ``--optim``) gets a file
    of its own, so that it leaves the throughput figures in train.json alone."""
    suffix = ''.join(f'_{mode}' for mode in ('blocks', 'optim') if getattr(args, mode, False))
    return WORK_DIR / f'{args.what}{suffix}.json'


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
