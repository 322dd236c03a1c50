"""Fusing a whole model for deployment: every MobileOne block reparameterized into one conv and,
optionally, every remaining conv + BN pair folded (what mmdet's test tool does with
``--fuse-conv-bn``)."""
from __future__ import annotations

import copy

from mmcv.cnn import fuse_conv_bn
from torch import nn

from .block import MobileOneBlock


def has_mobileone(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`MobileOneBlock` (something to reparameterize)."""
    return any(isinstance(m, MobileOneBlock) for m in model.modules())


def reparameterize_model(model: nn.Module, fold_bn: bool = False,
                         inplace: bool = False) -> nn.Module:
    """Fuse the train-time branches of every :class:`MobileOneBlock` inside ``model``.

    Works on any module tree (a detector, a segmentor, a bare backbone) and any batch norm
    (BN, SyncBN). The fused model gives the same outputs as ``model.eval()`` up to float
    rounding. Calling it on a fused model changes nothing.

    Args:
        model: The model to fuse.
        fold_bn: Also fold the BN of every other conv + BN pair into its conv (mmcv's
            ``fuse_conv_bn``): the heads and necks, and models without MobileOne blocks such
            as the MobileNetV2 peers, as a deployment runs them.
        inplace: Fuse ``model`` itself instead of a deep copy.

    Returns:
        The fused model, in eval mode.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for block in [m for m in model.modules() if isinstance(m, MobileOneBlock)]:
        block.reparameterize()
    if fold_bn:
        fuse_conv_bn(model)
        model.eval()  # the Identity modules that replace the folded BNs come in training mode
    return model
