"""Export a trained MobileOne detector or segmentor for deployment.

    python tools/export.py CONFIG CHECKPOINT --out-dir DIR [--onnx] [--input-size H W]

Loads the train-time checkpoint strictly, fuses every MobileOne block, checks on an input that
the fused model gives the train-time outputs (and refuses to write anything otherwise), then
writes DIR/fused.pth, DIR/train_config.py and DIR/deploy_config.py; with --onnx also
DIR/model.onnx (detector: boxes, scores, labels with NMS inside the graph; segmentor: logits
and class map), checked in ONNX Runtime against PyTorch. Use the pair as any config and
checkpoint:

    python tools/test.py DIR/deploy_config.py DIR/fused.pth
"""
import sys

from mmengine.config import DictAction

import mobileone_dense  # noqa: F401  (registers MobileOne, applies the compat fixes)
from mobileone_dense.export.numerics import RTOL
from mobileone_dense.export.pipeline import export
from mobileone_dense.utils import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('config', help='the training config')
    parser.add_argument('checkpoint', help='the train-time checkpoint (.pth)')
    parser.add_argument('--out-dir', required=True, help='where the files go')
    parser.add_argument('--onnx', action='store_true', help='also write and check model.onnx')
    parser.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'),
                        help="input of the check and of the ONNX model (default: the config's "
                             'test size)')
    parser.add_argument('--rtol', type=float, default=RTOL,
                        help='tolerance relative to the largest output (default: %(default).1e)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in tools/test.py')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    export(args.config, args.checkpoint, args.out_dir, formats=['onnx'] if args.onnx else [],
           input_size=args.input_size, cfg_options=args.cfg_options, rtol=args.rtol)


if __name__ == '__main__':
    sys.exit(cli.run_tool(main))
