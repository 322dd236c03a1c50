"""Draw a training run's loss, learning-rate and validation-metric curves into one PNG.

    python tools/analyze_logs.py LOG_JSON_OR_WORK_DIR [--out PNG] [--keys loss loss_cls ...]

Reads the JSON log mmengine writes to ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (given a
work dir, the newest run's). Three panels: the ``--keys`` (default: every ``loss*``) and the
learning rate against the iteration, and the validation metrics (``coco/bbox_mAP``, ``mIoU``,
...) against the epoch or iteration they were measured at. The PNG goes to ``--out``, by
default ``WORK_DIR/curves.png``.
"""
from __future__ import annotations

import importlib.util
import sys

if 'mobileone_dense' not in sys.modules:
    # Reading logs needs none of the models: stand the package up without running its
    # __init__, which imports torch, mmdet and mmseg to register the models (6-12 s a start).
    sys.modules['mobileone_dense'] = importlib.util.module_from_spec(
        importlib.util.find_spec('mobileone_dense'))

from mobileone_dense.utils import cli  # noqa: E402
from mobileone_dense.utils.logs import default_out, draw, find_log, read_log  # noqa: E402


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('log', help='a vis_data/scalars.json log, or the work dir of a run')
    parser.add_argument('--out', help='the PNG to write (default: WORK_DIR/curves.png)')
    parser.add_argument('--keys', nargs='+', metavar='KEY',
                        help='training keys of the first panel (default: every loss*)')
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.lower().endswith('.png'):
        raise cli.UsageError(f'--out {args.out} must end in .png: the curves are drawn as PNG.')
    return args


def main(argv=None):
    args = parse_args(argv)
    log = find_log(args.log)
    curves = read_log(log)
    out = args.out or default_out(log)
    draw(curves, out, args.keys)
    print(f'{log}: {curves.train_lines} training and {curves.val_lines} validation lines '
          f'drawn to {out}', flush=True)


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
