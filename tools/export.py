"""Export a trained MobileOne detector or segmentor for deployment.

    python tools/export.py CONFIG CHECKPOINT --out-dir DIR
        [--format {onnx,tflite,tflite-int8,coreml} ...] [--input-size H W]
        [--calib N] [--calib-data DIR] [--coreml-precision {fp16,fp32}]

Loads the train-time checkpoint strictly, fuses every MobileOne block, checks on an input that
the fused model gives the train-time outputs (and refuses to write anything otherwise), then
writes DIR/fused.pth, DIR/train_config.py and DIR/deploy_config.py, and one file per --format:

  onnx         DIR/model.onnx: the whole model, NMS inside (detector: boxes, scores, labels;
               segmentor: logits, class map), checked in ONNX Runtime against PyTorch
  tflite       DIR/model.tflite: LiteRT FP32 with MediaPipe Tasks metadata (labels, RGB 1xHxWx3
               input; detector: boxes and class scores of every anchor, which MediaPipe's
               ObjectDetector decodes and suppresses; segmentor: logits for its ImageSegmenter),
               checked in LiteRT (XNNPACK) against PyTorch
  tflite-int8  DIR/model_int8.tflite: the same with int8 weights and activations, calibrated on
               --calib images (default 200) of the config's training data through its test
               pipeline, or of --calib-data DIR; DIR/model_int8.calibration.json lists them
  coreml       DIR/model.mlpackage (FP16 weights unless --coreml-precision fp32): a detector as
               a pipeline of the network and class-wise NMS that Vision reads, a segmentor as
               an ML program of its class map; on Linux its spec is checked, not run

Evaluate any of them with the config's own metric, or use the fused pair as any checkpoint:

    python tools/test.py CONFIG DIR/model_int8.tflite
    python tools/test.py DIR/deploy_config.py DIR/fused.pth
"""

from mmengine.config import DictAction

import mobileone_dense  # noqa: F401  (registers MobileOne, fixes mmdet's SSDHead)
from mobileone_dense.deploy.calibration import DEFAULT_COUNT
from mobileone_dense.deploy.pipeline import FORMATS, Options, export
from mobileone_dense.export.numerics import RTOL
from mobileone_dense.utils import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('config', help='the training config')
    parser.add_argument('checkpoint', help='the train-time checkpoint (.pth)')
    parser.add_argument('--out-dir', required=True, help='where the files go')
    parser.add_argument('--format', nargs='+', default=[], metavar='FORMAT', dest='formats',
                        help=f'formats to write and check, any of: {", ".join(FORMATS)}')
    parser.add_argument('--onnx', action='store_true', help='same as --format onnx')
    parser.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'),
                        help="input of the check and of the exported models (default: the "
                             "config's test size)")
    parser.add_argument('--calib', type=int, default=DEFAULT_COUNT, metavar='N',
                        help='tflite-int8: calibration images (default: %(default)s)')
    parser.add_argument('--calib-data', metavar='DIR',
                        help="tflite-int8: calibrate on this folder's images instead of the "
                             "config's training data")
    parser.add_argument('--coreml-precision', choices=['fp16', 'fp32'], default='fp16',
                        help='coreml: weight and compute precision (default: %(default)s)')
    parser.add_argument('--rtol', type=float, default=RTOL,
                        help='tolerance relative to the largest output (default: %(default).1e)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in tools/test.py')
    args = parser.parse_args(argv)
    formats = [f.lower() for f in args.formats] + (['onnx'] if args.onnx else [])
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise cli.UsageError(f'--format {unknown[0]} is not a format this tool writes: choose '
                             f'from {", ".join(FORMATS)} (several may be given).')
    args.formats = list(dict.fromkeys(formats))  # in order, once each
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    options = Options(calib=args.calib, calib_data=args.calib_data,
                      coreml_precision=args.coreml_precision)
    export(args.config, args.checkpoint, args.out_dir, formats=args.formats,
           input_size=args.input_size, cfg_options=args.cfg_options, rtol=args.rtol,
           options=options)


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
