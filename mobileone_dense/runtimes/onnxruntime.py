"""ONNX Runtime on the CPU: sessions with every graph optimisation, and the process-wide thread
pool that a process serving several models wants."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ExportError


def ort_session(path: str | Path | bytes, threads: Optional[int] = None,
                spinning: bool = False, shared_pool: bool = False):
    """An ONNX Runtime CPU session with all graph optimizations.

    Args:
        path: The ``.onnx`` file, or a serialized model.
        threads: Intra-op threads (None: ONNX Runtime's default, one per core).
        spinning: Let idle worker threads spin; off, so that the session does not steal the
            cores of PyTorch code running between its calls.
        shared_pool: Run on the process-wide thread pool instead of a pool of the session's
            own; ``threads`` and ``spinning`` are then the pool's (see
            :func:`ort_use_shared_pool`, which must come before the first session).
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if shared_pool:
        options.use_per_session_threads = False
    else:
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '1' if spinning else '0')
    options.log_severity_level = 3
    try:
        model = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])
    except Exception as e:
        if shared_pool and 'GlobalThreadPools' in str(e):
            raise RuntimeError('ONNX Runtime has no shared thread pool in this process: call '
                               'ort_use_shared_pool() before its first session.') from None
        raise


#: Set by :func:`ort_use_shared_pool`.
_SHARED_POOL = False


def ort_use_shared_pool(threads: int) -> None:
    """Give the process one ONNX Runtime thread pool (``threads`` intra-op workers, spinning
    between runs, ONNX Runtime's default) for the sessions made with ``shared_pool=True``.

    A process that serves several models wants this: with a pool per session, the workers of
    the session that ran last keep spinning on the cores while the next one runs. It must be
    called before the process makes its first session.
    """
    import onnxruntime as ort
    global _SHARED_POOL
    ort.set_global_thread_pool_sizes(threads, 1)
    _SHARED_POOL = True


def ort_shared_pool_active() -> bool:
    """Whether :func:`ort_use_shared_pool` gave this process its pool: every session made
    after it must run on that pool (ONNX Runtime refuses a session with threads of its own)."""
    return _SHARED_POOL


class OnnxRuntimeModel:
    """A ``model.onnx`` of tools/export.py in ONNX Runtime: ``1x3xHxW`` float32 image in, the
    graph's outputs out (named as the task's ``output_names``)."""
    runtime = 'ONNX Runtime'

    def __init__(self, path: str | Path, threads: Optional[int] = None) -> None:
        self.path = Path(path)
        try:
            self.session = ort_session(path, threads=threads)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ExportError(f'{path} is not an ONNX model that ONNX Runtime can load '
                              f'({str(e).strip().splitlines()[0]}): export it again with '
                              f'tools/export.py --format onnx.') from None
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ExportError(f'{path} takes an input of shape {shape}, not a fixed 1x3xHxW '
                              f'image: export it with tools/export.py --format onnx, which fixes '
                              f'the size (--input-size H W).')
        #: (H, W) of the image the model takes.
        self.input_size = (int(shape[2]), int(shape[3]))

    def __call__(self, image) -> list:
        return self.session.run(None, {self.input_name: np.asarray(image, dtype=np.float32)})
