"""Fixes for known bugs of the OpenMMLab releases we support, applied on ``import mobileone_dense``.

mmdet 3.3.0: ``SSDHead`` cannot predict
    The post-processing shared by all dense heads
    (``BaseDenseHead._predict_by_feat_single``) reads ``self.loss_cls`` to learn whether the
    classification loss brings its own activation (``custom_cls_channels``, used by V3Det).
    ``SSDHead`` computes its classification loss inline (softmax cross-entropy with hard
    negative mining) and, unlike every other anchor head, never builds a ``loss_cls`` module,
    so ``predict`` -- and with it validation, testing and inference -- fails with
    ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``.

    The fix is at the depth of the bug: after ``SSDHead.__init__``, a head that has no
    ``loss_cls`` gets ``loss_cls = None``, which states the truth (there is no loss module) and
    lets the shared code take its ordinary branch: softmax scores, background column dropped,
    as ``use_sigmoid_cls=False`` prescribes. Every SSDHead is fixed this way, ours and
    mmdet's own SSDLite-MobileNetV2 (the comparison peer of the benchmarks) alike; nothing
    changes in the state_dict, and a subclass that does build a ``loss_cls`` keeps it.

The deploy extra's torchao (which litert-torch's INT8 quantizer needs) is imported by
transformers whenever mmdet imports (``mmdet.models.utils.vlfuse_helper``), and logs warnings
about CUDA kernels a CPU cannot load and a deprecated pytree call on every tool start.
:func:`quiet_optional_imports` lowers those two loggers to errors before mmdet is imported.

Each fix is guarded (skipped when the library is absent or already fixed) and idempotent
(importing twice, or reloading this module, patches once).
"""
from __future__ import annotations

import functools
import logging

_MARK = '_mobileone_dense_compat'

# Loggers that speak on import of optional packages, not about anything this toolkit does.
NOISY_IMPORT_LOGGERS = ('torchao', 'torch.utils._pytree')


def quiet_optional_imports() -> None:
    """Keep torchao's CUDA-kernel and torch's pytree deprecation warnings out of every tool."""
    for name in NOISY_IMPORT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def fix_ssd_head_loss_cls() -> bool:
    """Give every mmdet ``SSDHead`` a ``loss_cls`` attribute (``None``) after construction.

    Returns:
        Whether ``SSDHead`` is patched (now or by an earlier call); ``False`` when mmdet is not
        installed or its ``SSDHead`` already defines ``loss_cls``.
    """
    try:
        from mmdet.models.dense_heads import SSDHead
    except ImportError:
        return False
    init = SSDHead.__init__
    if getattr(init, _MARK, False):
        return True
    if 'loss_cls' in vars(SSDHead):  # a release that declares it itself
        return False

    @functools.wraps(init)
    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        if not hasattr(self, 'loss_cls'):
            self.loss_cls = None

    setattr(__init__, _MARK, True)
    SSDHead.__init__ = __init__
    return True


def apply_all() -> dict[str, bool]:
    """Apply every fix; returns which ones are in place."""
    return dict(ssd_head_loss_cls=fix_ssd_head_loss_cls())
