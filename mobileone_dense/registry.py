"""Register the MobileOne backbone in mmdet's and mmseg's ``MODELS`` registries, and the
class-balanced segmentation loss in mmseg's.

Either library may be missing; registering twice (a re-import) is harmless.
"""
from __future__ import annotations

import importlib
from typing import Iterator

from .models import MobileOne
from .models.losses import ClassBalancedCrossEntropyLoss

REGISTRIES = ('mmdet.registry', 'mmseg.registry')


def each_registry(kind: str) -> Iterator:
    """mmdet's and mmseg's registry named ``kind`` (``MODELS``, ``TRANSFORMS``), for each of the
    two packages that is installed."""
    for name in REGISTRIES:
        try:
            yield getattr(importlib.import_module(name), kind)
        except ImportError:
            continue


def register_all() -> list[str]:
    """Register :class:`MobileOne` wherever possible; returns the scopes it is registered in."""
    scopes = []
    for registry in each_registry('MODELS'):
        name = f'{registry.scope}.registry'
        current = registry.module_dict.get('MobileOne')
        if current is not None and current.__qualname__ != MobileOne.__qualname__:
            raise RuntimeError(f'{name}.MODELS already holds another MobileOne ({current}); '
                               f'mobileone_dense cannot register its backbone there.')
        registry.register_module(name='MobileOne', module=MobileOne, force=True)
        if registry.scope == 'mmseg':
            registry.register_module(module=ClassBalancedCrossEntropyLoss, force=True)
        scopes.append(registry.scope)
    return scopes
