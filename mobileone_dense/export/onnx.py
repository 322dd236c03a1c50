"""Writing a model as an ONNX file with torch's exporter (``torch.onnx.export(..., dynamo=True)``,
based on ``torch.export``; it needs the ``onnxscript`` package). The legacy TorchScript exporter
is deprecated and announced for removal."""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from .graph import fold_normalization
from .nms import class_nms_onnx

ONNX_OPSET = 18


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines and its notes about torchvision ops we do not
    use (torchvision is not installed)."""
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'torch.export', 'torch._export')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(wrapper: nn.Module, image: Tensor, path: str | Path,
                output_names: Optional[Sequence[str]] = None) -> Path:
    """Write ``wrapper`` as a single-file ONNX model (fixed input size, batch 1), its channel
    swap and division by std folded into the first convolution
    (:func:`~.graph.fold_normalization`)."""
    path = Path(path)
    try:
        import onnxscript  # noqa: F401  (the exporter's translation library)
    except ImportError:
        raise ExportError('ONNX export needs the onnx, onnxscript and onnxruntime packages: '
                          'pip install -e ".[test]" (or pip install onnx onnxscript '
                          'onnxruntime).') from None
    wrapper = fold_normalization(wrapper, image)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            wrapper, (image, ), dynamo=True, input_names=['image'],
            output_names=list(output_names) if output_names else None,
            opset_version=ONNX_OPSET, verbose=False,
            custom_translation_table={
                torch.ops.mobileone_dense.class_nms.default: class_nms_onnx})
        program.save(str(path), external_data=False)
    return path
