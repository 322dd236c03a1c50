"""Check, before anything is built, that the datasets a config reads are on disk.

A missing COCO, VOC, ADE20k or demo folder otherwise surfaces deep inside a dataset's
``__init__`` or a dataloader worker as a long traceback. :func:`check_datasets` walks the
dataloaders' datasets (through wrappers such as ``RepeatDataset`` and ``ConcatDataset``), joins
``data_root``, ``data_prefix`` and ``ann_file`` the way mmengine's ``BaseDataset`` does, and raises
:class:`~mobileone_dense.errors.DatasetNotFoundError` with one sentence naming the first missing
path, the layout the config expects and how to get the data. A config may state its own layout
in a top-level ``data_layout`` string (``DATA_ROOT`` stands for the dataset's ``data_root``), as
the demo configs do. :func:`reading_annotations` turns a JSON annotation file that does not parse
(a ``JSONDecodeError`` from pycocotools while the Runner builds a dataset or a metric) into
:class:`~mobileone_dense.errors.DatasetReadError` naming the file and the line.
"""
from __future__ import annotations

import contextlib
import json
import os.path as osp
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from .errors import DatasetNotFoundError, DatasetReadError

__all__ = ['DatasetNotFoundError', 'DatasetReadError', 'check_datasets', 'leaf_datasets',
           'required_paths', 'json_files', 'reading_annotations']

# Where to get the data, by a fragment of the missing path or by the dataset type. The first
# match wins, so the specific path fragments come first.
HINTS: Sequence[tuple[str, str]] = (
    ('data/demo', 'generate it with `python tools/make_demo_data.py` (`make demo` does it for '
                  'you)'),
    ('voc_masks', 'make the VOC-class masks from COCO with '
                  '`python tools/dataset_converters/coco_to_voc.py data/coco`'),
    ('SegmentationClassAug', "make the SBD masks with mmseg's "
                             "tools/dataset_converters/voc_aug.py (see mmseg's dataset_prepare "
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

# The on-disk layouts of the segmentation datasets (DATA_ROOT stands for the data_root).
VOC_LAYOUT = ('DATA_ROOT/JPEGImages/*.jpg, DATA_ROOT/SegmentationClass/*.png, '
              "DATA_ROOT/SegmentationClassAug/*.png (SBD, from mmseg's "
              'tools/dataset_converters/voc_aug.py) and '
              'DATA_ROOT/ImageSets/Segmentation/{train,aug,val}.txt')
ADE_LAYOUT = ('DATA_ROOT/images/{training,validation}/*.jpg and '
              'DATA_ROOT/annotations/{training,validation}/*.png (ADEChallengeData2016.zip '
              'unpacked into data/ade/)')
COCO_VOC_LAYOUT = ('DATA_ROOT/train2017/*.jpg and the VOC-class masks '
                   'DATA_ROOT/voc_masks/train2017/*.png + voc_masks/train2017.txt written by '
                   '"python tools/dataset_converters/coco_to_voc.py DATA_ROOT"')


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
    """The data root, data folders and annotation file a dataset config reads, in that order,
    joined to ``data_root`` as mmengine's ``BaseDataset`` does."""
    root = str(dataset.get('data_root') or '')

    def join(p: str) -> str:
        return p if not root or osp.isabs(p) or _is_remote(p) else osp.join(root, p)

    paths = [root.rstrip('/')] if root else []
    prefix = dataset.get('data_prefix') or {}
    if isinstance(prefix, Mapping):
        paths += [join(str(p)) for p in prefix.values() if isinstance(p, str) and p]
    if dataset.get('ann_file'):
        paths.append(join(str(dataset['ann_file'])))
    return [p for p in paths if not _is_remote(p)]


def _type_name(dataset: Mapping) -> str:
    dtype = dataset.get('type', '')
    return dtype if isinstance(dtype, str) else getattr(dtype, '__name__', '')


def hint_for(dataset_type: str, path: str) -> str:
    """How to get the data behind ``path`` (see :data:`HINTS`)."""
    norm = path.replace('\\', '/')
    for fragment, hint in HINTS:
        if fragment in norm or fragment == dataset_type:
            return hint
    return DEFAULT_HINT


def expected_layout(cfg: Mapping, dataset: Mapping) -> Optional[str]:
    """The on-disk layout a dataset config expects, in one phrase, if it is known."""
    kind = _type_name(dataset)
    prefix = dataset.get('data_prefix', {}) or {}
    layout = cfg.get('data_layout')
    if layout is None and kind == 'PascalVOCDataset':
        layout = COCO_VOC_LAYOUT if 'voc_masks' in str(prefix.get('seg_map_path', '')) \
            else VOC_LAYOUT
    elif layout is None and kind == 'ADE20KDataset':
        layout = ADE_LAYOUT
    if layout is None:
        return None
    return layout.replace('DATA_ROOT', str(dataset.get('data_root') or '.').rstrip('/'))


def check_datasets(cfg: Mapping, dataloaders: Sequence[str], root: str | Path = '.') -> None:
    """Raise :class:`DatasetNotFoundError` unless every path read by ``dataloaders`` exists.

    Args:
        cfg: An mmengine config (or a dict with ``*_dataloader`` entries).
        dataloaders: Keys of the config to check, e.g. ``('train_dataloader',
            'val_dataloader')``; absent or ``None`` entries are skipped.
        root: What relative paths are relative to (the working directory).
    """
    for name in dataloaders:
        loader = cfg.get(name)
        if not isinstance(loader, Mapping) or not isinstance(loader.get('dataset'), Mapping):
            continue
        for key, dataset in leaf_datasets(loader['dataset'], f'{name}.dataset'):
            for path in required_paths(dataset):
                if osp.exists(osp.join(str(root), path)):
                    continue
                dtype = _type_name(dataset)
                what = 'folder' if not osp.splitext(path)[1] else 'file'
                layout = expected_layout(cfg, dataset)
                expects = f'; the config expects {layout}' if layout else ''
                raise DatasetNotFoundError(
                    f'{dtype or "The dataset"} {what} {path} (read by {key}) does not exist: '
                    f'{hint_for(dtype, path)}{expects}; or point {key}.data_root at your copy '
                    f'(--cfg-options {key}.data_root=PATH).')


def json_files(cfg: Mapping, dataloaders: Sequence[str]) -> list[tuple[str, str, str]]:
    """The (path, config key, type) of every JSON annotation file that ``dataloaders`` and their
    evaluators (``val_evaluator`` for ``val_dataloader``, ...) read, without duplicates."""
    found, seen = [], set()

    def add(path, key: str, kind: str) -> None:
        if isinstance(path, str) and path.endswith('.json') and not _is_remote(path) \
                and path not in seen:
            seen.add(path)
            found.append((path, key, kind))

    for name in dataloaders:
        loader = cfg.get(name)
        if isinstance(loader, Mapping) and isinstance(loader.get('dataset'), Mapping):
            for key, dataset in leaf_datasets(loader['dataset'], f'{name}.dataset'):
                if dataset.get('ann_file'):
                    add(required_paths(dataset)[-1], key, _type_name(dataset))
        evaluator_key = name.replace('_dataloader', '_evaluator')
        evaluators = cfg.get(evaluator_key)
        evaluators = [evaluators] if isinstance(evaluators, Mapping) else evaluators or []
        for i, evaluator in enumerate(evaluators):
            if isinstance(evaluator, Mapping):
                key = evaluator_key if len(evaluators) == 1 else f'{evaluator_key}[{i}]'
                add(evaluator.get('ann_file'), key, _type_name(evaluator))
    return found


def _parse_error(error: BaseException) -> Optional[ValueError]:
    """The ``JSONDecodeError`` or ``UnicodeDecodeError`` that caused ``error``, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
            return error
        error = error.__cause__ or error.__context__
    return None


def _describe(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f'{error.msg} at line {error.lineno}, column {error.colno}'
    return f'not UTF-8 text: byte {error.start} is {error.object[error.start:error.start + 1]!r}'


@contextlib.contextmanager
def reading_annotations(cfg: Mapping, dataloaders: Sequence[str]):
    """Around a Runner's ``train()`` or ``test()``: a JSON annotation file of ``dataloaders``
    (or of their evaluators) that does not parse becomes :class:`DatasetReadError` naming the
    file, the parse error and its line.

    pycocotools' ``JSONDecodeError`` says where but not which file, so the files are parsed
    here, only once something failed (COCO's train JSON is 450 MB); the file the error's text
    came from (same length) goes first.
    """
    try:
        yield
    except Exception as e:
        error = _parse_error(e)
        if error is None:
            raise
        length = len(getattr(error, 'doc', None) or getattr(error, 'object', None) or '')
        candidates = [c for c in json_files(cfg, dataloaders) if osp.isfile(c[0])]
        candidates.sort(key=lambda c: abs(osp.getsize(c[0]) - length))
        for path, key, kind in candidates:
            try:
                with open(path, encoding='utf-8') as f:
                    json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as bad:
                hint = hint_for(kind, path)
                fix = ('copy or download it again' if hint == DEFAULT_HINT
                       else f'replace it: {hint}')
                raise DatasetReadError(
                    f'{kind or "The"} annotation file {path} (read by {key}) is not valid JSON '
                    f'({_describe(bad)}): it was probably cut short or damaged; {fix}.') from None
        raise
