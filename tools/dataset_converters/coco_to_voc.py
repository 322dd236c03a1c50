"""Turn COCO instance annotations into Pascal VOC semantic masks (the 20 classes COCO shares).

    python tools/dataset_converters/coco_to_voc.py data/coco [--split train2017] [--nproc 2]

The paper trains its VOC DeepLabV3 models "on both MS-COCO and VOC data simultaneously", as
MobileViT does. This writes, for every COCO image that shows at least one VOC class, a PNG of
VOC class indices (0 background, 1..20 in VOC order, 255 ignored), which mmseg's
``PascalVOCDataset`` reads like a VOC mask:

    COCO_ROOT/annotations/instances_SPLIT.json     (read)
    COCO_ROOT/SPLIT/*.jpg                          (read by the training config, not copied)
    OUT/SPLIT/<image stem>.png                     VOC-class masks
    OUT/SPLIT.txt                                  the stems of the kept images, one a line

``OUT`` defaults to ``COCO_ROOT/voc_masks``, the layout ``configs/deeplabv3/*_voc_coco.py``
expects. Pixels of COCO's other 60 classes are background; images without any VOC-class
object are skipped; crowd regions of a VOC class are ignored (255) unless a single object
covers them. Smaller objects are painted over larger ones, so people stay visible on the sofa.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image
from pycocotools.coco import COCO

from mobileone_dense.errors import DatasetReadError
from mobileone_dense.utils import cli

# VOC class index -> COCO category name (COCO's names for VOC's aeroplane, diningtable, ...).
VOC_FROM_COCO = {
    1: 'airplane', 2: 'bicycle', 3: 'bird', 4: 'boat', 5: 'bottle', 6: 'bus', 7: 'car',
    8: 'cat', 9: 'chair', 10: 'cow', 11: 'dining table', 12: 'dog', 13: 'horse',
    14: 'motorcycle', 15: 'person', 16: 'potted plant', 17: 'sheep', 18: 'couch', 19: 'train',
    20: 'tv',
}
IGNORE = 255


class ConversionError(DatasetReadError):
    """Bad input: one sentence naming the problem and the fix."""


def coco_to_voc_ids(categories: Iterable[Mapping]) -> dict[int, int]:
    """COCO category id -> VOC class index, matched by COCO's category names."""
    by_name = {c['name']: c['id'] for c in categories}
    missing = [name for name in VOC_FROM_COCO.values() if name not in by_name]
    if missing:
        raise ConversionError(
            f'the annotation file has no COCO categories named {missing}; pass an '
            f'instances_*.json of COCO 2014/2017 (its 80 categories include all 20 VOC classes).')
    return {by_name[name]: voc for voc, name in VOC_FROM_COCO.items()}


def voc_mask(coco: COCO, image_id: int, voc_ids: Mapping[int, int]) -> np.ndarray | None:
    """The VOC-class mask of one COCO image, or ``None`` if it shows no VOC class."""
    objects = [a for a in coco.imgToAnns[image_id] if a['category_id'] in voc_ids]
    if all(a.get('iscrowd', 0) for a in objects):
        return None
    image = coco.imgs[image_id]
    mask = np.zeros((image['height'], image['width']), np.uint8)
    crowd = np.zeros(mask.shape, bool)
    for a in sorted(objects, key=lambda a: -a.get('area', 0)):  # large first, small on top
        pixels = coco.annToMask(a).astype(bool)
        if a.get('iscrowd', 0):
            crowd |= pixels
        else:
            mask[pixels] = voc_ids[a['category_id']]
    mask[crowd & (mask == 0)] = IGNORE
    return mask


_JOB: tuple = ()  # (coco, voc_ids, out_dir) of this process: set once, not sent with each image


def _start(*job) -> None:
    global _JOB
    _JOB = job


def _convert_one(image_id: int) -> str | None:
    coco, voc_ids, out_dir = _JOB
    mask = voc_mask(coco, image_id, voc_ids)
    if mask is None:
        return None
    stem = Path(coco.imgs[image_id]['file_name']).stem
    Image.fromarray(mask).save(out_dir / f'{stem}.png')  # uint8, 2-D: an 8-bit grey PNG
    return stem


def convert(ann_file: Path, out_dir: Path, nproc: int = 1) -> list[str]:
    """Write the VOC-class masks of every COCO image of ``ann_file`` that shows a VOC class.

    Args:
        ann_file: A COCO ``instances_*.json``.
        out_dir: Where the PNGs go (created).
        nproc: Worker processes.

    Returns:
        The stems of the images that were kept, in the order of the annotation file.
    """
    if not ann_file.is_file():
        raise ConversionError(
            f'COCO annotation file {ann_file} not found; pass the COCO root that '
            f'holds annotations/instances_<split>.json (e.g. data/coco) and the right --split.')
    print(f'reading {ann_file}', flush=True)
    coco = COCO(str(ann_file))
    if not {'images', 'annotations', 'categories'} <= set(coco.dataset):
        raise ConversionError(
            f'{ann_file} is not a COCO instances file (it needs "images", '
            f'"annotations" and "categories"); pass annotations/instances_<split>.json.')
    voc_ids = coco_to_voc_ids(coco.loadCats(coco.getCatIds()))
    out_dir.mkdir(parents=True, exist_ok=True)
    image_ids, job = coco.getImgIds(), (coco, voc_ids, out_dir)
    if nproc > 1:  # each worker gets the index once, when it starts
        stems = track_parallel_progress(_convert_one, image_ids, nproc, initializer=_start,
                                        initargs=job, chunksize=16)
    else:
        _start(*job)
        stems = track_progress(_convert_one, image_ids)
    kept = [stem for stem in stems if stem is not None]
    print(f'{len(kept)} of {len(image_ids)} images show a VOC class', flush=True)
    return kept


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.tool_parser(__doc__)
    parser.add_argument('coco_root', help='COCO folder with annotations/instances_SPLIT.json')
    parser.add_argument('--split', default='train2017', help='default: %(default)s')
    parser.add_argument('--out', help='output folder (default: COCO_ROOT/voc_masks)')
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.coco_root)
    out = Path(args.out) if args.out else root / 'voc_masks'
    if not root.is_dir():
        raise ConversionError(
            f'COCO folder {root} not found; pass the folder that holds annotations/ and '
            f'{args.split}/ (e.g. data/coco).')
    kept = convert(root / 'annotations' / f'instances_{args.split}.json', out / args.split,
                   nproc=args.nproc)
    listing = out / f'{args.split}.txt'
    listing.write_text(''.join(f'{stem}\n' for stem in kept))
    print(f'coco_to_voc: wrote {len(kept)} masks to {out / args.split} and their list to '
          f'{listing}')
    if not (root / args.split).is_dir():
        print(f'coco_to_voc: note: the images are read from {root / args.split} at training '
              f'time, and that folder does not exist yet.')
    return 0


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
