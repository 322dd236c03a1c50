"""Fusing a whole model for deployment: MobileOne blocks reparameterized and, optionally, every
remaining conv + BN pair folded (what mmdet's test tool does with ``--fuse-conv-bn``)."""
from __future__ import annotations

from torch import nn

from ..reparam import reparameterize_model


def has_mobileone(model: nn.Module) -> bool:
    """Whether ``model`` holds a MobileOne block (something to fuse)."""
    return any(type(m).__name__ == 'MobileOneBlock' for m in model.modules())


def fuse(model: nn.Module, fold_bn: bool = False) -> nn.Module:
    """A fused copy of ``model`` in eval mode (``model`` itself is left as it is).

    Args:
        model: Any model; its MobileOne blocks become single convs.
        fold_bn: Also fold the BN of every other conv + BN pair (mmcv's ``fuse_conv_bn``), as
            a deployment does for the non-MobileOne parts (heads, MobileNetV2 peers).
    """
    fused = reparameterize_model(model)  # a deep copy, in eval mode
    if fold_bn:
        from mmcv.cnn import fuse_conv_bn
        fuse_conv_bn(fused)
    return fused
