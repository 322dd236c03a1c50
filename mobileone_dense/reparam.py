"""Model-level reparameterization: fuse every MobileOne block anywhere inside a model."""
from __future__ import annotations

import copy

from torch import nn

from .models.block import MobileOneBlock


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fuse the train-time branches of every :class:`MobileOneBlock` inside ``model``.

    Works on any module tree (a detector, a segmentor, a bare backbone) and any batch norm
    (BN, SyncBN). The fused model gives the same outputs as ``model.eval()`` up to float
    rounding. Calling it on a fused model changes nothing.

    Args:
        model: The model to fuse.
        inplace: Fuse ``model`` itself instead of a deep copy.

    Returns:
        The fused model, in eval mode.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for block in [m for m in model.modules() if isinstance(m, MobileOneBlock)]:
        block.reparameterize()
    return model
