"""mobileone-dense: Apple's MobileOne backbone for detection and segmentation on OpenMMLab.

Importing this package registers ``MobileOne`` in mmdet's and mmseg's ``MODELS`` registries
and allowlists the few globals that mmengine checkpoints need under torch's safe loading.
"""
from .models import MobileOne, MobileOneBlock, stage_channels
from .registry import register_all
from .reparam import reparameterize_model
from .utils.safe_load import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()
REGISTERED_SCOPES = register_all()

__all__ = [
    'MobileOne', 'MobileOneBlock', 'stage_channels', 'reparameterize_model', '__version__',
    'REGISTERED_SCOPES'
]
