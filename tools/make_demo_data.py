"""Generate the synthetic scene dataset of ``make demo``: boxes (COCO format) and semantic masks.

    python tools/make_demo_data.py [--out data/demo] [--train 1200] [--val 100] [--test 200]
                                   [--size 256]

Deterministic (``--seed``) and quick (a few seconds). Each split draws from a random stream of
its own: ``val`` is what schedules were tuned on, ``test`` is held out (no choice of the demo
configs looked at it) and is what ``make demo`` reports. Every scene is a textured background
(gradient, noise, stripes or checks, blurred blobs) with 2 to 6 shapes of five classes drawn in
random order, so later shapes occlude earlier ones. Shapes vary in size (about 10 % to 45 % of
the image side), aspect ratio, rotation, colour and shading. Each class has its own hue (jittered
by up to 12 degrees, at varied saturation and brightness) on a greyish background, so that a model
trained from scratch for a few minutes on a CPU can tell the classes apart: the demo shows the
pipeline working, not a benchmark. A shape may be cut by the image border by up to a tenth of its
extent, and an occluded shape keeps at least 65 % of its pixels; its box and its mask are those
of its *visible* pixels, so boxes and masks describe the same scene.

Layout (``OUT`` = ``data/demo``)::

    OUT/classes.txt                        the five class names, one a line (ids 1..5)
    OUT/images/{train,val,test}/000123.jpg RGB scenes, SIZE x SIZE
    OUT/annotations/instances_{train,val,test}.json
                                           COCO detection format: images, annotations
                                           (bbox [x, y, w, h] of the visible pixels, area =
                                           visible pixel count, iscrowd 0), categories 1..5
    OUT/masks/{train,val,test}/000123.png  uint8, one class index per pixel: 0 background,
                                           1..5 the classes in classes.txt order (no 255:
                                           every pixel is labelled)
    OUT/splits/{train,val,test}.txt        the image stems of each split, one a line

An mmseg dataset over it: ``BaseSegDataset`` with ``data_root=OUT``,
``data_prefix=dict(img_path='images/train', seg_map_path='masks/train')``,
``img_suffix='.jpg'``, ``seg_map_suffix='.png'``, ``reduce_zero_label=False`` and
``metainfo=dict(classes=('background', *CLASSES))`` (6 classes). For mmdet, ``CocoDataset``
with ``data_root=OUT``, ``ann_file='annotations/instances_train.json'``,
``data_prefix=dict(img='images/train/')`` and ``metainfo=dict(classes=CLASSES)``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

CLASSES = ('ellipse', 'rectangle', 'triangle', 'star', 'cross')
HUES = (0, 72, 144, 216, 288)  # hue of each class, in degrees
MIN_VISIBLE = 0.65  # an occluded shape keeps at least this fraction of its pixels
SPLITS = ('train', 'val', 'test')  # each seeds its own random stream


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: a colour gradient plus one texture, at moderate contrast."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grey = rng.uniform(40, 215, (2, 1)).astype(np.float32)
    c0, c1 = grey + rng.uniform(-20, 20, (2, 3)).astype(np.float32)  # low saturation
    angle = rng.uniform(0, 2 * math.pi)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    kind = rng.integers(4)
    amp = np.float32(rng.uniform(10, 30))
    if kind == 0:  # fine noise
        tex = rng.standard_normal((size, size), np.float32)
    elif kind == 1:  # stripes
        freq, phase = rng.uniform(8, 30), rng.uniform(0, 2 * math.pi)
        a = rng.uniform(0, math.pi)
        tex = np.sin(freq * (np.cos(a) * xx + np.sin(a) * yy) * 2 * math.pi + phase)
    elif kind == 2:  # checks
        n = rng.integers(6, 20)
        tex = (((xx * n).astype(int) + (yy * n).astype(int)) % 2 * 2 - 1).astype(np.float32)
    else:  # blurred blobs, one field per colour channel
        low = rng.standard_normal((size // 16, size // 16, 3), np.float32)
        tex = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    tex = tex if tex.ndim == 3 else tex[..., None]
    noise = rng.standard_normal((size, size, 3), np.float32) * 4
    return c0 + (c1 - c0) * t[..., None] + amp * tex + noise


def shape_polygon(rng: np.random.Generator, label: int, cx: float, cy: float, w: float,
                  h: float, angle: float) -> list[np.ndarray]:
    """Outline(s) of a shape of class ``label`` (1-based), rotated by ``angle``."""
    name = CLASSES[label - 1]
    if name == 'ellipse':
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * 0.5
    elif name == 'rectangle':
        pts = np.array([[-.5, -.5], [.5, -.5], [.5, .5], [-.5, .5]])
    elif name == 'triangle':
        apex = rng.uniform(-0.3, 0.3)
        pts = np.array([[apex, -.5], [.5, .5], [-.5, .5]])
    elif name == 'star':
        n = int(rng.integers(5, 7))
        t = np.arange(2 * n) * math.pi / n - math.pi / 2
        r = np.where(np.arange(2 * n) % 2 == 0, 0.5, rng.uniform(0.2, 0.28))
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    else:  # cross
        a = rng.uniform(0.14, 0.2)
        pts = np.array([[-a, -.5], [a, -.5], [a, -a], [.5, -a], [.5, a], [a, a], [a, .5],
                        [-a, .5], [-a, a], [-.5, a], [-.5, -a], [-a, -a]])
    pts = pts * [w, h]
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [np.round((pts @ rot.T + [cx, cy]) * 16).astype(np.int32)]  # 4 fractional bits


def shape_colour(rng: np.random.Generator, label: int) -> np.ndarray:
    """An RGB colour for a shape of class ``label``: the class's hue jittered by up to
    12 degrees, at a random saturation and brightness."""
    hue = (HUES[label - 1] + rng.uniform(-12, 12)) % 360
    hsv = np.array([[[hue / 2, rng.uniform(140, 255), rng.uniform(140, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def paint(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, label: int,
          bg_colour: np.ndarray) -> None:
    """Fill ``mask`` on ``img`` with a shaded colour of class ``label`` that stands out from
    ``bg_colour``."""
    for _ in range(20):
        colour = shape_colour(rng, label)
        if np.linalg.norm(colour - bg_colour) > 80:
            break
    ys, xs = np.nonzero(mask)
    a = rng.uniform(0, 2 * math.pi)
    size = img.shape[0]
    shade = rng.uniform(-40, 40) * ((np.cos(a) * xs + np.sin(a) * ys) / size - 0.5)
    fill = colour + shade[:, None] + rng.normal(0, 3, (len(ys), 3))
    img[ys, xs] = np.clip(fill, 0, 255)


def make_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """One scene: the image (uint8 RGB), its semantic mask, and (label, visible mask) per shape."""
    img = background(rng, size)
    bg_colour = img.reshape(-1, 3).mean(0)
    instance = np.zeros((size, size), np.int32)  # index of the shape on top, 0 = background
    labels, visible = [], [0]  # visible[k]: pixels of shape k still on top
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 7))):
        for _attempt in range(10):
            label = int(rng.integers(1, len(CLASSES) + 1))
            side = size * math.exp(rng.uniform(math.log(0.10), math.log(0.45)))
            aspect = math.exp(rng.uniform(-0.5, 0.5))
            w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
            cx = rng.uniform(0.4 * w, size - 0.4 * w)
            cy = rng.uniform(0.4 * h, size - 0.4 * h)
            canvas[:] = 0
            cv2.fillPoly(canvas, shape_polygon(rng, label, cx, cy, w, h, rng.uniform(0, math.pi)),
                         1, lineType=cv2.LINE_8, shift=4)
            new = canvas.astype(bool)
            area = int(new.sum())
            if area < 64:
                continue
            # every shape already there must keep MIN_VISIBLE of its pixels
            covered = np.bincount(instance[new], minlength=len(visible))
            remaining = np.array(visible) - covered
            if all(remaining[k] >= MIN_VISIBLE * labels[k - 1][1]
                   for k in range(1, len(visible))):
                break
        else:
            continue
        paint(rng, img, new, label, bg_colour)
        instance[new] = len(labels) + 1
        visible = list(remaining) + [area]
        labels.append((label, area))
    semantic = np.zeros((size, size), np.uint8)
    shapes = []
    for k, (label, _) in enumerate(labels, start=1):
        visible = instance == k
        semantic[visible] = label
        shapes.append((label, visible))
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8), semantic, shapes


def write_split(out: Path, split: str, num: int, size: int, seed: int) -> int:
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    for sub in ('images', 'masks'):
        (out / sub / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        img, semantic, shapes = make_scene(rng, size)
        name = f'{i:06d}'
        cv2.imwrite(str(out / 'images' / split / f'{name}.jpg'), img[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(out / 'masks' / split / f'{name}.png'), semantic)
        images.append(dict(id=i + 1, file_name=f'{name}.jpg', width=size, height=size))
        for label, visible in shapes:
            ys, xs = np.nonzero(visible)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, category_id=label,
                                    bbox=[int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                                    area=int(visible.sum()), iscrowd=0))
    categories = [dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(CLASSES)]
    (out / 'annotations').mkdir(parents=True, exist_ok=True)
    (out / 'annotations' / f'instances_{split}.json').write_text(json.dumps(
        dict(images=images, annotations=annotations, categories=categories)))
    (out / 'splits').mkdir(parents=True, exist_ok=True)
    (out / 'splits' / f'{split}.txt').write_text(
        ''.join(f'{im["file_name"][:-4]}\n' for im in images))
    return len(annotations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo', help='output folder (default: %(default)s)')
    parser.add_argument('--train', type=int, default=1200, help='training scenes')
    parser.add_argument('--val', type=int, default=100, help='validation scenes')
    parser.add_argument('--test', type=int, default=200, help='held-out test scenes')
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.size < 64 or min(args.train, args.val, args.test) < 1:
        parser.error('--size must be at least 64 and --train/--val/--test at least 1.')
    start = time.perf_counter()
    out = Path(args.out)
    (out / 'classes.txt').parent.mkdir(parents=True, exist_ok=True)
    (out / 'classes.txt').write_text(''.join(f'{c}\n' for c in CLASSES))
    sizes = dict(train=args.train, val=args.val, test=args.test)
    counts = {s: write_split(out, s, n, args.size, args.seed) for s, n in sizes.items()}
    print(f'demo data: {" / ".join(f"{n} {s}" for s, n in sizes.items())} scenes of '
          f'{args.size}x{args.size}, {" / ".join(str(c) for c in counts.values())} boxes, '
          f'classes {", ".join(CLASSES)}, in {out}/ ({time.perf_counter() - start:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
