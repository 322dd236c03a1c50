"""Loading MobileOne ImageNet checkpoints into :class:`~mobileone_dense.models.MobileOne`.

Three layouts are recognised; all are converted to Apple's naming, which the backbone uses:

============  ========================================  ======================================
source        example key                               becomes
============  ========================================  ======================================
Apple         ``stage3.12.rbr_skip.running_var``        (unchanged)
mmpretrain    ``backbone.stage3.12.branch_norm.weight``  ``stage3.12.rbr_skip.weight``
              ``...branch_conv_list.0.norm.bias``       ``...rbr_conv.0.bn.bias``
              ``...branch_scale.conv.weight``           ``...rbr_scale.conv.weight``
              ``...branch_reparam.weight``              ``...reparam_conv.weight``
              ``...se.conv1.conv.weight``               ``...se.reduce.weight``
timm          ``stem.conv_kxk.0.conv.weight``           ``stage0.rbr_conv.0.conv.weight``
              ``stages.2.19.attn.fc2.bias``             ``stage3.19.se.expand.bias``
              ``...conv_scale.bn.weight``               ``...rbr_scale.bn.weight``
              ``...identity.running_mean``              ``...rbr_skip.running_mean``
============  ========================================  ======================================

Classifier keys (``linear.*``, ``head.*``) are left out with a one-line note. A checkpoint
that does not fit the backbone raises :class:`CheckpointMismatchError` with one sentence naming
what the file looks like and the first mismatched keys.
"""
from __future__ import annotations

import re
import urllib.error
from typing import Mapping, Optional

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from ..errors import CheckpointMismatchError
from ..utils.safe_load import mmengine_checkpoints

_MMPRETRAIN = [
    (r'\.branch_conv_list\.(\d+)\.norm\.', r'.rbr_conv.\1.bn.'),
    (r'\.branch_conv_list\.', '.rbr_conv.'),
    (r'\.branch_scale\.norm\.', '.rbr_scale.bn.'),
    (r'\.branch_scale\.', '.rbr_scale.'),
    (r'\.branch_norm\.', '.rbr_skip.'),
    (r'\.branch_reparam\.', '.reparam_conv.'),
    (r'\.se\.conv1\.conv\.', '.se.reduce.'),
    (r'\.se\.conv2\.conv\.', '.se.expand.'),
]
_TIMM = [
    (r'^stem\.', 'stage0.'),
    (r'^stages\.(\d+)\.', lambda m: f'stage{int(m.group(1)) + 1}.'),
    (r'\.conv_kxk\.', '.rbr_conv.'),
    (r'\.conv_scale\.', '.rbr_scale.'),
    (r'\.identity\.', '.rbr_skip.'),
    (r'\.attn\.fc1\.', '.se.reduce.'),
    (r'\.attn\.fc2\.', '.se.expand.'),
]
_CLASSIFIER = re.compile(r'^(linear|head|fc|classifier|final_conv)\.')


def extract_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a raw state_dict, or one under ``state_dict``,
    ``model`` or ``state_dict_ema``; a ``module.`` (DataParallel) prefix is dropped."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(
            f'The checkpoint holds a {type(checkpoint).__name__}, not a state_dict; save '
            f'model.state_dict() or an mmengine checkpoint instead.')
    for key in ('state_dict', 'model', 'state_dict_ema'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {re.sub(r'^module\.', '', k): v for k, v in checkpoint.items()
            if isinstance(v, torch.Tensor)}


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the layout of a MobileOne state_dict: ``apple``, ``mmpretrain``, ``timm`` or
    ``unknown``."""
    keys = list(state_dict)
    if any(k.startswith(('stem.conv_kxk', 'stem.reparam_conv', 'stages.')) for k in keys):
        return 'timm'
    if any('.branch_' in k for k in keys):
        return 'mmpretrain'
    if any(re.match(r'stage0\.(rbr_conv|reparam_conv)', k) for k in keys):
        return 'apple'
    return 'unknown'


def convert_to_apple(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, str, list[str]]:
    """Rename a MobileOne state_dict to Apple's naming.

    Returns:
        The converted state_dict (backbone keys only), the detected format and the classifier
        keys that were left out.
    """
    fmt = detect_format(state_dict)
    # An mmpretrain ImageClassifier keeps the backbone under 'backbone.', the head under 'head.'.
    strip = fmt == 'mmpretrain' and any(k.startswith('backbone.') for k in state_dict)
    rules = {'mmpretrain': _MMPRETRAIN, 'timm': _TIMM}.get(fmt, [])
    converted, dropped = {}, []
    for key, value in state_dict.items():
        if strip and key.startswith('backbone.'):
            key = key[len('backbone.'):]
        elif strip or _CLASSIFIER.match(key):
            dropped.append(key)
            continue
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        converted[key] = value
    return converted, fmt, dropped


def describe(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A few words on what a MobileOne state_dict looks like (format, fused or not, width)."""
    fmt = detect_format(state_dict)
    if fmt == 'unknown':
        first = ', '.join(list(state_dict)[:3]) or 'no tensors'
        return f'not a MobileOne checkpoint of a known layout (first keys: {first})'
    converted, _, _ = convert_to_apple(state_dict)
    fused = any('reparam_conv' in k for k in converted)
    stem = next((v for k, v in converted.items()
                 if k in ('stage0.rbr_conv.0.conv.weight', 'stage0.reparam_conv.weight')), None)
    width = f' with a {stem.shape[0]}-channel stem' if stem is not None else ''
    return f'a {"fused" if fused else "train-time (unfused)"} {fmt} MobileOne checkpoint{width}'


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     source: str = 'the checkpoint') -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
              for k, v in expected.items()
              if k in state_dict and state_dict[k].shape != v.shape]
    if not (missing or unexpected or shapes):
        return
    problems = []
    if missing:
        problems.append(f'missing keys {missing[:3]}')
    if unexpected:
        problems.append(f'unexpected keys {unexpected[:3]}')
    if shapes:
        problems.append(f'shape mismatches {shapes[:3]}')
    deployed = getattr(model, 'deployed', None)
    target = type(model).__name__
    if deployed is not None:
        target = f'{"a fused (deploy=True)" if deployed else "a train-time"} {target}'
    raise CheckpointMismatchError(
        f'{source} does not fit {target}: {"; ".join(problems)} '
        f'(check the variant, deploy=True for fused files, and the key prefix).')


def load_mobileone_checkpoint(model: nn.Module, filename: str, prefix: Optional[str] = None,
                              map_location: str = 'cpu') -> dict[str, torch.Tensor]:
    """Load Apple's, mmpretrain's or timm's MobileOne weights strictly into ``model``.

    Args:
        model: A :class:`~mobileone_dense.models.MobileOne`.
        filename: A local path or an ``https://`` URL.
        prefix: Keep only the keys under this prefix (e.g. ``backbone.`` of a detector).
        map_location: Where to put the tensors.

    Returns:
        The state_dict that was loaded (Apple's naming).
    """
    try:
        with mmengine_checkpoints():
            checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'Pretrained checkpoint {filename} does not exist: point '
            f'model.backbone.init_cfg.checkpoint at a MobileOne file, or set '
            f'model.backbone.init_cfg=None to train from scratch.') from None
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        if not str(filename).startswith(('http://', 'https://')):
            raise
        raise ConnectionError(
            f'Could not download the pretrained checkpoint {filename} ({e}): download it on a '
            f'machine with internet access and set model.backbone.init_cfg.checkpoint to the '
            f'local path (e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH), or set '
            f'model.backbone.init_cfg=None to train from scratch.') from None
    state_dict = extract_state_dict(checkpoint)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    what = describe(state_dict)
    converted, fmt, dropped = convert_to_apple(state_dict)
    check_state_dict(model, converted, source=f'{filename} ({what})')
    model.load_state_dict(converted, strict=True)
    note = f'; left out {len(dropped)} classifier keys ({dropped[0]}, ...)' if dropped else ''
    print_log(f'Loaded {what} from {filename}{note}.', logger='current')
    return converted
