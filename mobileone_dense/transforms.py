"""The image loader that names an unreadable image: a warning and another image in training,
one sentence in testing (:class:`LoadImageOrSkip`, and :func:`use_checked_image_loading` that
puts it into a config's pipelines)."""
from __future__ import annotations

import logging
import os
from typing import Mapping, Optional, Sequence

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from .errors import DatasetNotFoundError, DatasetReadError
from .registry import each_registry

__all__ = ['LoadImageOrSkip', 'register_transforms', 'use_checked_image_loading']

TYPE = 'LoadImageOrSkip'
#: The ``type`` of mmcv's loader in a config, with or without a scope prefix.
REPLACED = ('LoadImageFromFile', 'mmcv.LoadImageFromFile', 'mmdet.LoadImageFromFile',
            'mmseg.LoadImageFromFile', 'mmengine.LoadImageFromFile')


def _reason(error: BaseException, filename) -> str:
    """Why an image could not be read, in a few words."""
    try:
        if os.path.getsize(filename) == 0:
            return 'the file is empty'
    except (OSError, TypeError):
        pass
    if isinstance(error, AssertionError):  # mmcv: cv2.imdecode returned None
        return 'it is cut short or not an image'
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0]}' if text else type(error).__name__


class LoadImageOrSkip(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that names the file it cannot read.

    mmcv 2.1.0 stops with ``AssertionError: failed to load image: X`` (or the decoder's own
    error) inside a dataloader. Here an image that is missing or cannot be decoded

    - with ``skip_unreadable=True`` (training): logs a warning naming the file, once per file
      and process, and returns None, on which mmengine's ``BaseDataset`` fetches another
      index;
    - otherwise (testing, where every image counts): raises
      :class:`~mobileone_dense.errors.DatasetReadError` (or ``DatasetNotFoundError`` for a
      missing file) with one sentence naming the file.

    Args:
        skip_unreadable: Skip an unreadable image with a warning instead of stopping.
        **kwargs: ``LoadImageFromFile``'s arguments.
    """

    def __init__(self, skip_unreadable: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_unreadable = skip_unreadable
        self._warned: set = set()

    def transform(self, results: dict) -> Optional[dict]:
        try:
            return super().transform(results)
        except Exception as e:  # noqa: BLE001  (every decoder raises its own errors)
            filename = results.get('img_path')
            missing = isinstance(e, FileNotFoundError)
            if self.skip_unreadable:
                if filename not in self._warned:
                    self._warned.add(filename)
                    why = ('does not exist' if missing
                           else f'cannot be read ({_reason(e, filename)})')
                    print_log(f'Skipping image {filename}, which {why}: training goes on with the '
                              f'other images; replace the file, or remove it and its annotations '
                              f'from the data set.', logger='current', level=logging.WARNING)
                return None
            if missing:
                raise DatasetNotFoundError(
                    f'Image {filename}, listed in the data set, does not exist: put it back, '
                    f'or remove it and its annotations from the data set.') from None
            raise DatasetReadError(
                f'Image {filename} cannot be read ({_reason(e, filename)}): replace it with a '
                f'readable copy, or remove it and its annotations from the data set.') from None


def register_transforms() -> list[str]:
    """Register :class:`LoadImageOrSkip` in mmdet's and mmseg's ``TRANSFORMS`` (either may be
    missing); returns the scopes it is registered in."""
    scopes = []
    for registry in each_registry('TRANSFORMS'):
        registry.register_module(name=TYPE, module=LoadImageOrSkip, force=True)
        scopes.append(registry.scope)
    return scopes


def _swap(node, skip_unreadable: bool) -> int:
    """Replace, in place, every mmcv ``LoadImageFromFile`` step under ``node``; returns how many."""
    count = 0
    if isinstance(node, Mapping):
        if node.get('type') in REPLACED or node.get('type') is LoadImageFromFile:
            node['type'] = TYPE
            node['skip_unreadable'] = skip_unreadable
            count += 1
        for value in node.values():
            count += _swap(value, skip_unreadable)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _swap(value, skip_unreadable)
    return count


def use_checked_image_loading(cfg, dataloaders: Sequence[str], skip_unreadable: bool) -> int:
    """Load the images of ``dataloaders`` with :class:`LoadImageOrSkip`, in place.

    Every mmcv ``LoadImageFromFile`` step in those dataloaders' datasets (through wrappers such
    as ``RepeatDataset``) becomes ``LoadImageOrSkip(skip_unreadable=...)``, keeping its other
    arguments, and ``mobileone_dense.transforms`` joins the config's ``custom_imports`` so that
    the config the Runner dumps into its work dir still builds.

    Returns:
        How many pipeline steps were replaced.
    """
    register_transforms()
    count = sum(_swap(cfg.get(name), skip_unreadable) for name in dataloaders
                if isinstance(cfg.get(name), Mapping))
    if count:
        imports = dict(cfg.get('custom_imports') or {})
        modules = imports.get('imports') or []
        modules = [modules] if isinstance(modules, str) else list(modules)
        if __name__ not in modules:
            modules.append(__name__)
        imports['imports'] = modules
        imports.setdefault('allow_failed_imports', False)
        cfg['custom_imports'] = imports
    return count


register_transforms()
