"""What the segmentation configs expect on disk, and one sentence when it is not there.

mmseg fails deep inside a dataset's ``__init__`` (an ``AssertionError`` on a path, or an empty
dataset) when Pascal VOC, SBD, ADE20k or the converted COCO masks are missing. Before building a
runner, :func:`check_segmentation_data` walks the datasets of a config (through
``ConcatDataset``) and raises :class:`DatasetNotFoundError` naming the first missing folder or
list file and the layout the config expects, with where that layout comes from. A config may
state its own layout in a top-level ``data_layout`` string (``DATA_ROOT`` stands for the
dataset's ``data_root``), as the demo config does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Optional

VOC_LAYOUT = ('DATA_ROOT/JPEGImages/*.jpg, DATA_ROOT/SegmentationClass/*.png, '
              'DATA_ROOT/SegmentationClassAug/*.png (SBD, from mmseg\'s '
              'tools/dataset_converters/voc_aug.py) and '
              'DATA_ROOT/ImageSets/Segmentation/{train,aug,val}.txt')
ADE_LAYOUT = ('DATA_ROOT/images/{training,validation}/*.jpg and '
              'DATA_ROOT/annotations/{training,validation}/*.png (ADEChallengeData2016.zip '
              'unpacked into data/ade/)')
COCO_VOC_LAYOUT = ('DATA_ROOT/train2017/*.jpg and the VOC-class masks '
                   'DATA_ROOT/voc_masks/train2017/*.png + voc_masks/train2017.txt written by '
                   '"python tools/dataset_converters/coco_to_voc.py DATA_ROOT"')


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or list file of a config is missing (one sentence with the fix)."""


def expected_layout(dataset: Mapping) -> str:
    """The on-disk layout a dataset config expects, in one phrase (``DATA_ROOT`` stands for its
    ``data_root``)."""
    kind = dataset.get('type', '')
    prefix = dataset.get('data_prefix', {}) or {}
    if kind == 'PascalVOCDataset' and 'voc_masks' in str(prefix.get('seg_map_path', '')):
        return COCO_VOC_LAYOUT
    if kind == 'PascalVOCDataset':
        return VOC_LAYOUT
    if kind == 'ADE20KDataset':
        return ADE_LAYOUT
    return (f'DATA_ROOT/{prefix.get("img_path", "")} (images) and '
            f'DATA_ROOT/{prefix.get("seg_map_path", "")} (masks)')


def iter_datasets(dataset: Mapping) -> Iterator[Mapping]:
    """The leaf dataset configs of ``dataset`` (``ConcatDataset``, ``RepeatDataset`` and
    ``ClassBalancedDataset`` wrappers are opened)."""
    if 'datasets' in dataset:
        for d in dataset['datasets']:
            yield from iter_datasets(d)
    elif 'dataset' in dataset:
        yield from iter_datasets(dataset['dataset'])
    else:
        yield dataset


def _missing(dataset: Mapping, root: Path) -> Optional[Path]:
    data_root = Path(dataset.get('data_root') or '')
    paths = [data_root / p for p in (dataset.get('data_prefix') or {}).values() if p]
    if dataset.get('ann_file'):
        paths.append(data_root / dataset['ann_file'])
    for path in [data_root] + paths:
        full = path if path.is_absolute() else root / path
        if not full.exists():
            return path
    return None


def check_segmentation_data(cfg: Mapping, splits: tuple[str, ...] = ('train', 'val', 'test'),
                            root: str | Path = '.') -> None:
    """Raise :class:`DatasetNotFoundError` if a folder or list file of the config's datasets is
    missing.

    Args:
        cfg: A config (``Config`` or dict) with ``{split}_dataloader`` entries.
        splits: Which dataloaders to check (``train`` for training, ``test`` for testing).
        root: What relative ``data_root`` paths are relative to (the working directory).
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        for dataset in iter_datasets(loader['dataset']):
            missing = _missing(dataset, Path(root))
            if missing is None:
                continue
            data_root = dataset.get('data_root') or '.'
            layout = cfg.get('data_layout') or expected_layout(dataset)
            layout = layout.replace('DATA_ROOT', str(data_root).rstrip('/'))
            raise DatasetNotFoundError(
                f'{split} data of {dataset.get("type", "the dataset")}: {missing} does not '
                f'exist; expected {layout}.')
