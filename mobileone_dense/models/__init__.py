from .arch import ARCHS, MobileOneArch, get_arch, stage_channels
from .backbone import MobileOne
from .block import MobileOneBlock, SEBlock
from .checkpoint import CheckpointMismatchError, load_mobileone_checkpoint
from .fuse import has_mobileone, reparameterize_model

__all__ = [
    'ARCHS', 'MobileOneArch', 'get_arch', 'stage_channels', 'MobileOne', 'MobileOneBlock',
    'SEBlock', 'CheckpointMismatchError', 'load_mobileone_checkpoint', 'has_mobileone',
    'reparameterize_model'
]
