"""mobileone-dense: Apple's MobileOne backbone for detection and segmentation on OpenMMLab.

Importing this package registers ``MobileOne`` in mmdet's and mmseg's ``MODELS`` registries,
allowlists the few globals that mmengine checkpoints need under torch's safe loading, and
applies the fixes of :mod:`mobileone_dense.compat` (mmdet 3.3.0's SSDHead cannot predict).
"""
from .compat import apply_all as apply_compat_fixes
from .engine import CPUBF16OptimWrapper  # noqa: F401  (registers the optim wrapper)
from .models import MobileOne, MobileOneBlock, stage_channels
from .registry import register_all
from .reparam import reparameterize_model
from .utils.safe_load import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()
REGISTERED_SCOPES = register_all()
COMPAT_FIXES = apply_compat_fixes()

__all__ = [
    'MobileOne', 'MobileOneBlock', 'stage_channels', 'reparameterize_model', '__version__',
    'REGISTERED_SCOPES'
]
