"""A fix for mmdet 3.3.0's ``SSDHead``, which cannot predict; applied on ``import mobileone_dense``.

The post-processing shared by all dense heads (``BaseDenseHead._predict_by_feat_single``) reads
``self.loss_cls`` to learn whether the classification loss brings its own activation
(``custom_cls_channels``, used by V3Det). ``SSDHead`` computes its classification loss inline
(softmax cross-entropy with hard negative mining) and, unlike every other anchor head, never
builds a ``loss_cls`` module, so ``predict`` -- and with it validation, testing and inference --
fails with ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``.

The fix is at the depth of the bug: after ``SSDHead.__init__``, a head that has no ``loss_cls``
gets ``loss_cls = None``, which states the truth (there is no loss module) and lets the shared
code take its ordinary branch: softmax scores, background column dropped, as
``use_sigmoid_cls=False`` prescribes. Every SSDHead is fixed this way, ours and mmdet's own
SSDLite-MobileNetV2 alike; nothing changes in the state_dict, and a release or subclass that
builds a ``loss_cls`` keeps it. The fix is idempotent and skipped without mmdet.
"""
from __future__ import annotations

import functools

_MARK = '_mobileone_dense_fix'


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
