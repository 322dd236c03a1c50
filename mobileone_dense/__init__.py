"""mobileone-dense: Apple's MobileOne backbone for detection and segmentation on OpenMMLab.

Importing this package registers ``MobileOne`` in mmdet's and mmseg's ``MODELS`` registries
(with the class-balanced loss in mmseg's, and the bfloat16 optimizer wrapper, the merging
optimizer constructor and the progress hook in mmengine's), and fixes mmdet 3.3.0's
``SSDHead``, which cannot predict (:mod:`mobileone_dense.models.mmdet_fix`).

mmengine imports transformers where it is installed (the deploy extra brings it), which imports
torchao, whose loggers report CUDA kernels a CPU cannot load and a deprecated pytree call; those
two loggers are quiet while this package imports mmengine, mmdet and mmseg, and keep their
levels afterwards.
"""
from .utils.capture import quiet_loggers

with quiet_loggers('torchao', 'torch.utils._pytree'):
    from .engine import CPUBF16OptimWrapper  # noqa: F401  (registers the optim wrapper)
    from .models import MobileOne, MobileOneBlock, reparameterize_model, stage_channels
    from .models.mmdet_fix import fix_ssd_head_loss_cls
    from .registry import register_all
    from .version import __version__

    REGISTERED_SCOPES = register_all()
    fix_ssd_head_loss_cls()

__all__ = [
    'MobileOne', 'MobileOneBlock', 'stage_channels', 'reparameterize_model', '__version__',
    'REGISTERED_SCOPES'
]
