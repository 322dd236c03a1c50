"""One wrapper per runtime of an exported model: ``1x3xHxW`` float32 image (0..255, channels as
mmcv loads them) in, the model's outputs (numpy arrays) out, and its ``input_size`` (H, W).

:func:`open_model` picks the wrapper by the file's suffix: ``.onnx`` (ONNX Runtime) or
``.tflite`` (LiteRT with XNNPACK). A Core ML ``.mlpackage`` can be converted and inspected on
Linux but only run on macOS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import UsageError
from .litert import LiteRTModel
from .onnxruntime import OnnxRuntimeModel

#: Suffix -> what runs it.
RUNTIMES = {'.onnx': 'ONNX Runtime', '.tflite': 'LiteRT'}


def open_model(path: str | Path, threads: Optional[int] = None):
    """The runtime wrapper of an exported model file (see the module doc)."""
    path = Path(path)
    if path.suffix == '.mlpackage':
        raise UsageError(f'{path} is a Core ML package: Core ML runs models on macOS and iOS '
                         f'only; here, evaluate the .onnx or .tflite export of the same model.')
    if path.suffix not in RUNTIMES:
        raise UsageError(f'{path} is not an exported model this toolkit runs: give a .onnx or '
                         f'.tflite file written by tools/export.py (or a .pth checkpoint).')
    if not path.is_file():
        raise UsageError(f'{path} does not exist: export it with tools/export.py CONFIG '
                         f'CHECKPOINT --out-dir DIR --format {path.suffix[1:]}.')
    if path.suffix == '.onnx':
        return OnnxRuntimeModel(path, threads)
    return LiteRTModel(path, threads)


__all__ = ['RUNTIMES', 'open_model']
