"""The one place a config becomes a model, and a checkpoint file its weights.

- :func:`load_config` reads a config file (or an ``mmdet::``/``mmseg::`` config shipped inside
  those packages) and applies ``--cfg-options``;
- :func:`build_model` builds the detector or segmentor in eval mode, without pretrained init
  unless asked (nothing is downloaded), with SyncBN turned into BN, and optionally loads a
  checkpoint with :func:`load_checkpoint` (strict, one sentence on a mismatch);
- :func:`read_checkpoint` and :func:`check_checkpoint_file` say in one sentence that a
  checkpoint file is missing, cut short or holds objects that safe loading refuses;
- :data:`VARIANTS` and :func:`config_path` name the MobileOne variants and their configs.
"""
from __future__ import annotations

import copy
import importlib
import pickle
import zipfile
from pathlib import Path
from typing import Optional

from torch import nn

from .errors import CheckpointMismatchError, ConfigError, UsageError
from .models.arch import ARCHS
from .models.checkpoint import check_state_dict, extract_state_dict
from .utils.safe_load import mmengine_checkpoints

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
#: Every variant of the backbone's arch table, and the paper's S0-S4 that the configs cover.
VARIANTS = tuple(ARCHS)
PAPER_VARIANTS = tuple(v for v in ARCHS if v.startswith('s'))
#: The config of each task's MobileOne model, by variant.
CONFIG_PATTERNS = {'detection': 'ssdlite/mobileone_{}.py',
                   'segmentation': 'deeplabv3/mobileone_{}_voc.py'}
#: The scopes whose registries build models, by config ``default_scope``.
SCOPES = ('mmdet', 'mmseg')


def config_path(task: str, variant: str) -> Path:
    """``configs/ssdlite/mobileone_{variant}.py`` or
    ``configs/deeplabv3/mobileone_{variant}_voc.py``."""
    if task not in CONFIG_PATTERNS:
        raise ConfigError(f'Unknown task {task!r}: choose {" or ".join(CONFIG_PATTERNS)}.')
    return CONFIGS / CONFIG_PATTERNS[task].format(variant)


def _resolve(path: str | Path) -> Path:
    """A config path; ``mmdet::x.py`` / ``mmseg::x.py`` name configs inside those packages."""
    text = str(path)
    if '::' in text:
        package, rel = text.split('::', 1)
        try:
            module = __import__(package)
        except ImportError:
            raise UsageError(f'Config {text} names the package {package}, which is not '
                             f'installed: run make install.') from None
        return Path(module.__file__).parent / '.mim' / 'configs' / rel
    return Path(text)


def load_config(path: str | Path, cfg_options: Optional[dict] = None):
    """Read an mmengine config and apply ``cfg_options`` (as ``--cfg-options`` gives them)."""
    from mmengine.config import Config
    resolved = _resolve(path)
    if not resolved.is_file():
        raise UsageError(f'Config file {path} does not exist: pass one of configs/**/*.py.')
    try:
        cfg = Config.fromfile(str(resolved))
    except (SyntaxError, ImportError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f'Config {path} cannot be read ({type(e).__name__}: {e}): fix the '
                          f'file or pass another config.') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def without_init_cfg(cfg):
    """A copy of a model config with every ``init_cfg`` set to None and no ``pretrained``."""
    if isinstance(cfg, dict):
        return type(cfg)({k: (None if k == 'init_cfg' else without_init_cfg(v))
                          for k, v in cfg.items() if k != 'pretrained'})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_init_cfg(v) for v in cfg)
    return cfg


def drop_pretrained(cfg) -> None:
    """Set every ``init_cfg`` of ``cfg.model`` to None, in place: the weights come from a
    checkpoint, and nothing is downloaded."""
    cfg.model = without_init_cfg(cfg.model)


def config_scope(cfg) -> str:
    """The OpenMMLab scope that builds a config's model (``mmdet`` or ``mmseg``)."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ConfigError(f"The config's default_scope is {scope!r}: this toolkit handles "
                          f"detectors (default_scope='mmdet') and segmentors "
                          f"(default_scope='mmseg'); set it in the config.")
    return scope


def build_model(cfg, checkpoint: Optional[str | Path] = None,
                pretrained: bool = False) -> nn.Module:
    """Build ``cfg.model`` in eval mode with the registry of the config's task.

    Args:
        cfg: A config (:func:`load_config`).
        checkpoint: A checkpoint to load strictly (:func:`load_checkpoint`); its ``meta`` is
            kept as ``model.checkpoint_meta``.
        pretrained: Keep the config's ``init_cfg`` (pretrained backbone weights) and run it.
            Off by default: weights come from a checkpoint or stay as PyTorch initialises
            them, and nothing is downloaded.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    scope = config_scope(cfg)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(scope)
    model_cfg = copy.deepcopy(cfg.model) if pretrained else without_init_cfg(cfg.model)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = revert_sync_batchnorm(registry.build(model_cfg))
    if pretrained:
        model.init_weights()
    if checkpoint is not None:
        model.checkpoint_meta = load_checkpoint(model, checkpoint)
    model.eval()  # not chained: some OpenMMLab modules return None from train()
    return model


#: What :func:`read_checkpoint` tells a person to do about a checkpoint that is cut short.
INCOMPLETE_FIX = ('it was probably cut short while being written or copied; use another checkpoint '
                  '(training keeps the last few in its work dir) or copy it again')


def read_checkpoint(path: str | Path, fix: str = INCOMPLETE_FIX) -> dict:
    """The contents of a local checkpoint file, read with torch's safe loading.

    Args:
        path: The checkpoint file.
        fix: What the sentence tells a person to do when the file is not a complete checkpoint.

    Raises:
        UsageError: The file does not exist.
        CheckpointMismatchError: The file is not a complete checkpoint (truncated, or not one),
            or holds objects that safe loading refuses.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    path = Path(path)
    if not path.is_file():
        raise UsageError(f'Checkpoint {path} does not exist: pass the .pth file that training '
                         f'wrote (e.g. work_dirs/<config>/epoch_200.pth).')
    incomplete = f'{path} is not a complete checkpoint ({{}}): {fix}.'
    if path.stat().st_size == 0:
        raise CheckpointMismatchError(incomplete.format('the file is empty'))
    try:
        with mmengine_checkpoints():
            return CheckpointLoader.load_checkpoint(str(path), map_location='cpu',
                                                    logger='silent')
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            KeyError) as e:
        # torch.save writes a zip archive whose directory sits at its very end: a file cut
        # short has none, and bytes that never were a checkpoint are no zip either. In a
        # whole archive, an UnpicklingError is safe loading refusing an object.
        if not zipfile.is_zipfile(path):
            reason = 'not a file that torch.save wrote, or cut short'
        elif isinstance(e, pickle.UnpicklingError):
            raise CheckpointMismatchError(
                f'{path} holds Python objects that safe loading refuses: load only checkpoints '
                f'you trust, written by tools/train.py or tools/export.py.') from None
        else:
            reason = f'torch cannot read it: {type(e).__name__}'
        raise CheckpointMismatchError(incomplete.format(reason)) from None


def check_checkpoint_file(path: str | Path, fix: str = INCOMPLETE_FIX) -> None:
    """Raise :func:`read_checkpoint`'s sentence now, before a Runner is built, if ``path`` is not
    a complete checkpoint; URLs and ``scheme://`` paths are left to mmengine.

    Cheap for what ``torch.save`` writes (a zip archive since torch 1.6): the archive's central
    directory sits at its very end, so a file cut short while being saved or copied has none,
    and a file whose directory opens is taken as complete without reading the weights.
    """
    if '://' in str(path):
        return
    if not zipfile.is_zipfile(path):
        read_checkpoint(path, fix)  # raises the sentence


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint strictly into ``model``; returns its ``meta`` (may be empty).

    Raises:
        CheckpointMismatchError: One sentence naming the first mismatched keys, or saying that
            a fused file was given to a train-time model.
    """
    checkpoint = read_checkpoint(path)
    state_dict = extract_state_dict(checkpoint)
    fused_keys = [k for k in state_dict if '.reparam_conv.' in k]
    if fused_keys and not any('.reparam_conv.' in k for k in model.state_dict()):
        raise CheckpointMismatchError(
            f'{path} is already fused ({fused_keys[0]} ...) but the model is train-time: use a '
            f'config whose backbone has deploy=True (the deploy_config.py that tools/export.py '
            f'wrote next to it), or the train-time checkpoint.')
    check_state_dict(model, state_dict, source=f'Checkpoint {path}')
    model.load_state_dict(state_dict, strict=True)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}
