"""mobileone-dense: Apple's MobileOne backbone for detection and segmentation on OpenMMLab.

Importing this package registers ``MobileOne`` in mmdet's and mmseg's ``MODELS`` registries,
allowlists the few globals that mmengine checkpoints need under torch's safe loading, and
applies the fixes of :mod:`mobileone_dense.compat` (mmdet 3.3.0's SSDHead cannot predict).
"""
from .compat import apply_all as apply_compat_fixes
from .compat import quiet_optional_imports

quiet_optional_imports()  # before anything below imports mmdet (and with it transformers)
from .engine import CPUBF16OptimWrapper  # noqa: E402,F401  (registers the optim wrapper)
from .models import MobileOne, MobileOneBlock, stage_channels  # noqa: E402
from .registry import register_all  # noqa: E402
from .reparam import reparameterize_model  # noqa: E402
from .utils.safe_load import allow_mmengine_checkpoints  # noqa: E402
from .version import __version__  # noqa: E402

allow_mmengine_checkpoints()
REGISTERED_SCOPES = register_all()
COMPAT_FIXES = apply_compat_fixes()

__all__ = [
    'MobileOne', 'MobileOneBlock', 'stage_channels', 'reparameterize_model', '__version__',
    'REGISTERED_SCOPES'
]
