from .arch import ARCHS, MobileOneArch, get_arch, stage_channels
from .backbone import MobileOne
from .block import MobileOneBlock, SEBlock
from .checkpoint import CheckpointMismatchError, load_mobileone_checkpoint

__all__ = [
    'ARCHS', 'MobileOneArch', 'get_arch', 'stage_channels', 'MobileOne', 'MobileOneBlock',
    'SEBlock', 'CheckpointMismatchError', 'load_mobileone_checkpoint'
]
