"""Let torch's safe checkpoint loading (``weights_only=True``, the default since torch 2.6)
read mmengine checkpoints, inside a ``with`` block only (:func:`mmengine_checkpoints`).

mmengine 0.10.7 saves a checkpoint's ``message_hub`` with :class:`HistoryBuffer` objects
holding numpy arrays, and calls ``torch.load`` without ``weights_only``. Rather than turning safe
loading off for every file, we allowlist exactly these globals; any other pickled object is
still refused by torch.

One of them is ``getattr``: pickle writes the statistics functions a HistoryBuffer keeps
(``HistoryBuffer.min`` ...) as ``getattr(HistoryBuffer, 'min')``. Allowlisting the builtin would
let a crafted file reach any attribute of any allowed object, so we register a restricted
``getattr`` under its name that only resolves public functions of ``HistoryBuffer``.
"""
from __future__ import annotations

import numpy as np
import torch


def history_buffer_getattr(obj: object, name: str) -> object:
    """``getattr`` limited to the public functions of mmengine's HistoryBuffer."""
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and not name.startswith('_') and callable(
            vars(HistoryBuffer).get(name)):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({obj!r}, {name!r}) while loading a checkpoint: only '
        f'HistoryBuffer statistics are allowed.')


def mmengine_checkpoint_globals() -> list:
    """The non-tensor globals that mmengine Runner checkpoints contain."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in ('float64', 'float32', 'int64', 'int32', 'bool')]
    return [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes,
            (history_buffer_getattr, 'builtins.getattr')]


def mmengine_checkpoints():
    """A context in which ``torch.load(weights_only=True)`` also accepts
    :func:`mmengine_checkpoint_globals`: wrap the calls that load mmengine checkpoints (a
    Runner's ``train()`` or ``test()``, ``CheckpointLoader``, the inferencers) in it. Outside it,
    torch's allowlist is as torch ships it."""
    return torch.serialization.safe_globals(mmengine_checkpoint_globals())
