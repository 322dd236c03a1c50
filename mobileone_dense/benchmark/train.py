"""``tools/benchmark.py train``: training throughput in float32 and under bfloat16 autocast, side
by side, for SSDLite-MobileOne, DeepLabV3-MobileOne and their MobileNetV2 peers.

Each model takes whole training steps (``model.train_step``: preprocessing, forward, losses,
backward and an SGD step) on a batch of random images with random boxes or label maps, once
through mmengine's ``OptimWrapper`` (float32) and once through
:class:`~mobileone_dense.engine.CPUBF16OptimWrapper` (what ``tools/train.py --amp`` uses on a
CPU). Both precisions train the same model, so they do the same work. After one untimed step of
each, every round runs all steps in a rotating order (:mod:`.timing`), a model's two precisions
next to each other; the table shows the median images/s and the median of the per-round ratios
bf16 / fp32.
"""
from __future__ import annotations

import argparse
import functools
import statistics

import torch

from .. import apis
from ..engine import CPUBF16OptimWrapper, require_cpu_bf16
from ..errors import UsageError
from .common import CPULoad, format_table, load_notes, machine_info
from .models import PEER, SEG_CLASSES, group_config
from .timing import time_side_by_side

PRECISIONS = ('fp32', 'bf16')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='*', default=list(apis.PAPER_VARIANTS),
                        choices=apis.PAPER_VARIANTS, help='SSDLite-MobileOne variants')
    parser.add_argument('--seg-variants', nargs='*', default=['s0'],
                        choices=apis.PAPER_VARIANTS, help='DeepLabV3-MobileOne variants')
    parser.add_argument('--no-peers', dest='peers', action='store_false',
                        help='leave out the MobileNetV2 peers')
    parser.add_argument('--rounds', type=int, default=5,
                        help='timed steps per model and precision (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch threads (default: torch's choice)")
    parser.add_argument('--batch', type=int, default=8, help='SSDLite batch (%(default)s)')
    parser.add_argument('--seg-batch', type=int, default=4, help='DeepLabV3 batch (%(default)s)')
    parser.add_argument('--size', type=int, default=320, help='SSDLite input side (%(default)s)')
    parser.add_argument('--seg-size', type=int, default=512,
                        help='DeepLabV3 crop side (%(default)s)')


def batch(group: str, size: int, count: int, seed: int = 0) -> dict:
    """Random uint8 images with four random boxes each (detection), or with label maps of
    16x16-pixel blocks and an ignored border (segmentation), as ``train_step`` takes them."""
    from mmengine.structures import InstanceData, PixelData
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(count):
        meta = dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0))
        if group == 'ssdlite':
            from mmdet.structures import DetDataSample
            sample = DetDataSample(metainfo=meta)
            xy = torch.rand(4, 2, generator=g) * size * 0.6
            wh = torch.rand(4, 2, generator=g) * size * 0.35 + 16
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(0, 80, (4, ), generator=g))
        else:
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            blocks = torch.randint(0, SEG_CLASSES, (1, size // 16 + 1, size // 16 + 1),
                                   generator=g)
            labels = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :size, :size]
            labels[:, :, :4] = 255
            sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
              for _ in range(count)]
    return dict(inputs=images, data_samples=samples)


def run(args: argparse.Namespace) -> dict:
    from mmengine.optim import OptimWrapper
    instructions = require_cpu_bf16('the bfloat16 columns cannot be measured on this machine')
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [('ssdlite', v) for v in args.variants] + [('deeplabv3', v) for v in
                                                      args.seg_variants]
    if args.peers:
        runs += [(g, PEER) for g in ('ssdlite', 'deeplabv3') if any(r[0] == g for r in runs)]
    if not runs:
        raise UsageError('Nothing to time: give --variants or --seg-variants a variant.')
    batches = {'ssdlite': args.batch, 'deeplabv3': args.seg_batch}
    sizes = {'ssdlite': args.size, 'deeplabv3': args.seg_size}
    wrappers = {'fp32': OptimWrapper, 'bf16': CPUBF16OptimWrapper}
    fns, names = {}, []
    for group, variant in runs:
        size = sizes[group]
        options = ({'model.data_preprocessor.size': (size, size)} if group == 'deeplabv3'
                   else None)
        torch.manual_seed(0)
        model = apis.build_model(group_config(group, variant, options))
        model.train()
        data = batch(group, size, batches[group], seed=1)
        name = f'{"SSDLite" if group == "ssdlite" else "DeepLabV3"}-' + \
            (PEER if variant == PEER else f'MobileOne-{variant.upper()}')
        names.append((name, group))
        for p in PRECISIONS:  # one model, two optimizers: the same weights in both precisions
            wrapper = wrappers[p](torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
            fns[f'{name} {p}'] = functools.partial(model.train_step, data, wrapper)
    print(f'Training throughput, fp32 vs bf16 autocast ({instructions}), '
          f'{torch.get_num_threads()} threads, {args.rounds} interleaved rounds; SSDLite at '
          f'{args.size}, batch {args.batch}; DeepLabV3 at {args.seg_size}, batch {args.seg_batch}')
    with CPULoad() as load:
        timed = time_side_by_side(fns, rounds=args.rounds, warmup=1, settle=0, inference=False)
    rows, lines = [], []
    for name, group in names:
        t = {p: timed[f'{name} {p}']['rounds_ms'] for p in PRECISIONS}
        ips = {p: batches[group] * 1e3 / statistics.median(t[p]) for p in PRECISIONS}
        ratios = [f / b for f, b in zip(t['fp32'], t['bf16'])]
        rows.append(dict(model=name, batch=batches[group], size=sizes[group],
                         fp32_images_per_s=ips['fp32'], bf16_images_per_s=ips['bf16'],
                         bf16_over_fp32=statistics.median(ratios), rounds_ms=t))
        lines.append([name, f'{sizes[group]}x{sizes[group]}', batches[group], ips['fp32'],
                      ips['bf16'], f'{statistics.median(ratios):.2f}x',
                      f'{min(ratios):.2f}-{max(ratios):.2f}x'])
    text = format_table(['model', 'input', 'batch', 'fp32 img/s', 'bf16 img/s', 'bf16 / fp32',
                         'rounds range'], lines)
    notes = load_notes({'train': load.others})
    print(text, *notes, sep='\n')
    return dict(benchmark='train', machine=machine_info(), bf16_instructions=instructions,
                rounds=args.rounds, rows=rows, table=text, notes=notes)
