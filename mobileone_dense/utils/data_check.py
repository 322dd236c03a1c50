"""Check, before anything is built, that the datasets a config reads are on disk.

A missing COCO (or VOC, ADE20k, demo) folder otherwise surfaces deep inside a dataloader worker
as a long traceback. :func:`check_datasets` reads the dataloaders' ``data_root``, ``ann_file``
and ``data_prefix`` (through dataset wrappers such as ``RepeatDataset`` and ``ConcatDataset``),
the way mmengine's ``BaseDataset`` joins them, and raises :class:`DatasetNotFoundError` with one
sentence naming the first missing path and how to get the data. It serves mmdet and mmseg
configs alike; for mmseg configs it first runs
:func:`mobileone_dense.datasets.check_segmentation_data`, whose sentences also spell out the
VOC/ADE20k/demo folder layouts.
"""
from __future__ import annotations

import os.path as osp
from typing import Iterator, Mapping, Sequence

# Where to get the data, by a fragment of the missing path or by the dataset type. The first
# match wins, so the specific path fragments come first.
HINTS: Sequence[tuple[str, str]] = (
    ('data/demo', 'generate it with `python tools/make_demo_data.py` (`make demo` does it for '
                  'you)'),
    ('voc_masks', 'make the VOC-class masks from COCO with '
                  '`python tools/dataset_converters/coco_to_voc.py data/coco`'),
    ('SegmentationClassAug', "make the SBD masks with mmseg's "
                             'tools/dataset_converters/voc_aug.py (see mmseg\'s dataset_prepare '
                             'docs)'),
    ('CocoDataset', 'download train2017.zip, val2017.zip and annotations_trainval2017.zip from '
                    'https://cocodataset.org/#download and unzip them into data/coco/'),
    ('PascalVOCDataset', 'download VOCtrainval_11-May-2012.tar from '
                         'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and untar it into '
                         'data/'),
    ('ADE20KDataset', 'download ADEChallengeData2016.zip from '
                      'http://data.csail.mit.edu/places/ADEchallenge/ and unzip it into '
                      'data/ade/'),
)
DEFAULT_HINT = 'put the dataset there'


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder named by the config is missing."""

    def __str__(self) -> str:  # FileNotFoundError would print its errno tuple
        return self.args[0] if self.args else ''


def leaf_datasets(dataset: Mapping, key: str) -> Iterator[tuple[str, Mapping]]:
    """The (config key, dataset config) of every dataset inside wrappers such as
    ``RepeatDataset(dataset=...)`` and ``ConcatDataset(datasets=[...])``."""
    if isinstance(dataset.get('datasets'), (list, tuple)):
        for i, d in enumerate(dataset['datasets']):
            yield from leaf_datasets(d, f'{key}.datasets[{i}]')
    elif isinstance(dataset.get('dataset'), Mapping):
        yield from leaf_datasets(dataset['dataset'], f'{key}.dataset')
    else:
        yield key, dataset


def _is_remote(path: str) -> bool:
    return '://' in path


def required_paths(dataset: Mapping) -> list[str]:
    """The annotation file and data folders a dataset config reads, joined to ``data_root`` as
    mmengine's ``BaseDataset`` does."""
    root = dataset.get('data_root') or ''

    def join(p: str) -> str:
        return p if not root or osp.isabs(p) or _is_remote(p) else osp.join(root, p)

    paths = []
    if dataset.get('ann_file'):
        paths.append(join(str(dataset['ann_file'])))
    prefix = dataset.get('data_prefix') or {}
    if isinstance(prefix, Mapping):
        paths += [join(str(p)) for p in prefix.values() if isinstance(p, str) and p]
    if not paths and root:
        paths.append(root)
    return [p for p in paths if not _is_remote(p)]


def hint_for(dataset_type: str, path: str) -> str:
    """How to get the data behind ``path`` (see :data:`HINTS`)."""
    norm = path.replace('\\', '/')
    for fragment, hint in HINTS:
        if fragment in norm or fragment == dataset_type:
            return hint
    return DEFAULT_HINT


def check_datasets(cfg: Mapping, dataloaders: Sequence[str]) -> None:
    """Raise :class:`DatasetNotFoundError` unless every path read by ``dataloaders`` exists.

    Args:
        cfg: An mmengine config.
        dataloaders: Keys of the config to check, e.g. ``('train_dataloader',
            'val_dataloader')``; absent or ``None`` entries are skipped.
    """
    if cfg.get('default_scope') == 'mmseg':
        from ..datasets import check_segmentation_data
        check_segmentation_data(cfg, splits=tuple(n.split('_')[0] for n in dataloaders))
    for name in dataloaders:
        loader = cfg.get(name)
        if not isinstance(loader, Mapping) or not isinstance(loader.get('dataset'), Mapping):
            continue
        for key, dataset in leaf_datasets(loader['dataset'], f'{name}.dataset'):
            for path in required_paths(dataset):
                if osp.exists(path):
                    continue
                dtype = dataset.get('type', '')
                dtype = dtype if isinstance(dtype, str) else getattr(dtype, '__name__', '')
                what = 'folder' if not osp.splitext(path)[1] else 'file'
                raise DatasetNotFoundError(
                    f'{dtype or "The dataset"} {what} {path} (read by {key}) does not exist: '
                    f'{hint_for(dtype, path)}, or point {key}.data_root at your copy '
                    f'(--cfg-options {key}.data_root=PATH).')
