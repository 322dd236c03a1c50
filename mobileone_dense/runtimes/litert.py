"""LiteRT (TensorFlow Lite) on the CPU through ai-edge-litert's interpreter, with the XNNPACK
delegate that Android's CPU path uses: one ``.tflite`` file, named tensors in and out."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ExportError


class LiteRTModel:
    """A ``.tflite`` model of :mod:`mobileone_dense.export.litert`: ``1xHxWx3`` float32 image
    in (channels last, as phones hold images), the network's outputs out, in the order of its
    signature (``output_0``, ``output_1``, ...).

    Args:
        path: The ``.tflite`` file.
        threads: The interpreter's threads (XNNPACK's thread pool); None: LiteRT's default.
    """
    runtime = 'LiteRT'

    def __init__(self, path: str | Path, threads: Optional[int] = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ExportError('Running a .tflite model needs the ai-edge-litert package: '
                              'make install (or pip install -e ".[deploy]").') from None
        self.path = Path(path)
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except ValueError as e:
            raise ExportError(f'{path} is not a LiteRT model that this interpreter can load '
                              f'({str(e).splitlines()[0]}): export it again with '
                              f'tools/export.py --format tflite.') from None
        signatures = self.interpreter.get_signature_list()
        self.signature = next(iter(signatures))
        io = signatures[self.signature]
        self.input_name = io['inputs'][0]
        # output_0, output_1, ..., output_10 in the order of the traced module's outputs
        self.output_names = sorted(io['outputs'], key=lambda n: int(n.rsplit('_', 1)[-1]))
        self.runner = self.interpreter.get_signature_runner(self.signature)
        shape = self.interpreter.get_input_details()[0]['shape']
        #: (H, W) of the image the model takes.
        self.input_size = (int(shape[1]), int(shape[2]))

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Run on a ``1x3xHxW`` float32 image (the layout of every other runtime here)."""
        nhwc = np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(0, 2, 3, 1))
        outputs = self.runner(**{self.input_name: nhwc})
        return [outputs[name] for name in self.output_names]
