"""The images INT8 export calibrates on: drawn from the config's training data through its own
test pipeline (so they look as the deployed model's inputs do, and are not the images its
accuracy is measured on), or read from a folder of images for a config whose data set is not on
this machine. Each becomes a ``1x3xHxW`` float32 image (0..255, channels as mmcv loads them)
at the export size; what was used is recorded next to the model."""
from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..datasets import check_datasets, leaf_datasets
from ..errors import DatasetNotFoundError, ExportError
from ..transforms import use_checked_image_loading

#: Images calibrated on unless --calib says otherwise.
DEFAULT_COUNT = 200
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def to_model_input(image: np.ndarray, size: Sequence[int]) -> Tensor:
    """A BGR ``HxWx3`` (or ``3xHxW``) uint8 image, resized to ``size`` (H, W) if it differs
    (bilinear), as a ``1x3xHxW`` float32 tensor."""
    import mmcv
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:
        image = image.transpose(1, 2, 0)
    if tuple(image.shape[:2]) != tuple(size):
        image = mmcv.imresize(image, (int(size[1]), int(size[0])), interpolation='bilinear')
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]


def folder_images(folder: str | Path, count: int, size: Sequence[int], seed: int = 0
                  ) -> tuple[list[Tensor], dict]:
    """Up to ``count`` images of ``folder`` (searched recursively; a random draw when it holds
    more)."""
    import mmcv
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f'--calib-data {folder} is not a folder: give a folder of images '
                          f'(jpg, png, ...) that look like the deployed inputs.')
    files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ExportError(f'--calib-data {folder} holds no images ({", ".join(IMAGE_SUFFIXES)}): '
                          f'put a few hundred images that look like the deployed inputs there.')
    if len(files) > count:
        files = sorted(random.Random(seed).sample(files, count))
    images = []
    for path in files:
        try:
            image = mmcv.imread(str(path))
        except Exception:  # mmcv/cv2 raise several kinds for a broken file
            image = None
        if image is None:
            raise ExportError(f'Cannot read the calibration image {path}: remove it from '
                              f'--calib-data or replace it with a readable image.')
        images.append(to_model_input(image, size))
    record = dict(source='folder', folder=str(folder), count=len(images),
                  files=[str(p) for p in files])
    return images, record


def _calibration_dataset_cfg(cfg) -> tuple[str, str, dict]:
    """The dataloader key, config key and dataset config of the first dataset the training
    split reads (the test split if the config has none), with the test pipeline."""
    loader = 'train_dataloader' if cfg.get('train_dataloader') else 'test_dataloader'
    key, dataset = next(leaf_datasets(cfg[loader]['dataset'], f'{loader}.dataset'))
    dataset = copy.deepcopy(dict(dataset))
    dataset['pipeline'] = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    dataset['test_mode'] = True  # no filtering of images without annotations
    return loader, key, dataset


def config_images(cfg, count: int, size: Sequence[int], seed: int = 0
                  ) -> tuple[list[Tensor], dict]:
    """Up to ``count`` images of the config's training split, through its test pipeline."""
    from mmengine.registry import DATASETS, init_default_scope

    loader, key, dataset_cfg = _calibration_dataset_cfg(cfg)
    try:
        check_datasets(cfg, [loader])
    except DatasetNotFoundError as e:
        raise ExportError(f'INT8 calibration draws images from the config\'s training data, '
                          f'which is not here: {e} Or pass --calib-data DIR, a folder of images '
                          f'like the deployed inputs.') from None
    init_default_scope(cfg.get('default_scope'))
    holder = {'calib': dict(dataset=dataset_cfg)}
    use_checked_image_loading(holder, ['calib'], skip_unreadable=False)
    dataset = DATASETS.build(holder['calib']['dataset'])
    indices = list(range(len(dataset)))
    if len(indices) > count:
        indices = sorted(random.Random(seed).sample(indices, count))
    images, files = [], []
    for i in indices:
        item = dataset[i]
        images.append(to_model_input(item['inputs'].numpy(), size))
        files.append(str(item['data_samples'].metainfo.get('img_path', i)))
    if not images:
        raise ExportError(f'The config\'s training data ({key}) has no images to calibrate on: '
                          f'pass --calib-data DIR, a folder of images like the deployed inputs.')
    record = dict(source=key, data_root=str(dataset_cfg.get('data_root', '')),
                  pipeline='test_dataloader.dataset.pipeline', count=len(images), files=files)
    return images, record


def calibration_images(cfg, size: Sequence[int], count: int = DEFAULT_COUNT,
                       folder: Optional[str | Path] = None, seed: int = 0
                       ) -> tuple[list[Tensor], dict]:
    """The calibration images at ``size`` and a record of what they are (see the module doc)."""
    if count <= 0:
        raise ExportError(f'--calib {count}: INT8 calibration needs at least one image; a few '
                          f'hundred is usual.')
    if folder is not None:
        return folder_images(folder, count, size, seed)
    return config_images(cfg, count, size, seed)
