"""``tools/benchmark.py train``: training throughput in float32 and under bfloat16 autocast, side
by side, for SSDLite-MobileOne, DeepLabV3-MobileOne and their MobileNetV2 peers.

Each model takes whole training steps (``model.train_step``: preprocessing, forward, losses,
backward and an SGD step) on a batch of random images with random boxes or label maps, once
through mmengine's ``OptimWrapper`` (float32) and once through
:class:`~mobileone_dense.engine.CPUBF16OptimWrapper` (what ``tools/train.py --amp`` uses on a
CPU). Both precisions train the same model (same weights, so the same work). After one untimed
step of each, every round runs all steps in a rotating order (:func:`time_side_by_side`), a
model's two precisions next to each other; the table shows the median images/s of the rounds
and the median (and range) of the per-round ratios bf16 / fp32: a round's two steps of one model
run seconds apart, so the ratio survives the machine's drift over minutes. Like
``tools/train.py``, the process keeps the memory a step frees for the next
(:func:`~mobileone_dense.utils.malloc.retain_freed_memory`); ``MOBILEONE_DENSE_MALLOC=system``
times glibc's defaults instead.
"""
from __future__ import annotations

import argparse
import functools
import statistics

import torch

from .. import apis
from ..errors import UsageError
from ..utils.timing import time_side_by_side
from .common import add_timing_arguments, format_table, machine_info
from .detector import _inputs as detection_inputs
from .load import CPULoad

PEER = apis.PEER_NAME
VARIANTS = apis.PAPER_VARIANTS
PRECISIONS = ('fp32', 'bf16')
SEG_CLASSES = 21  # VOC, as configs/deeplabv3/mobileone_*_voc.py; the peer is set to match


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='*', default=list(VARIANTS), choices=VARIANTS,
                        help='SSDLite-MobileOne variants (default: all)')
    parser.add_argument('--seg-variants', nargs='*', default=['s0'], choices=VARIANTS,
                        help='DeepLabV3-MobileOne variants (default: %(default)s)')
    parser.add_argument('--no-peers', dest='peers', action='store_false',
                        help="leave out mmdet's SSDLite-MobileNetV2 and mmseg's "
                             'DeepLabV3-MobileNetV2-D8')
    add_timing_arguments(parser, rounds=5, threads=None, helps=dict(
        rounds='timed steps per model and precision (default: %(default)s; a round of all '
               'eight models takes 100 s on 2 idle cores, the untimed first steps twice that)'))
    parser.add_argument('--batch', type=int, default=8, help='SSDLite batch (%(default)s)')
    parser.add_argument('--size', type=int, default=320, help='SSDLite input side (%(default)s)')
    parser.add_argument('--seg-batch', type=int, default=4,
                        help='DeepLabV3 batch (%(default)s)')
    parser.add_argument('--seg-size', type=int, default=512,
                        help='DeepLabV3 crop side (%(default)s)')
    parser.add_argument('--lr', type=float, default=1e-4, help='SGD learning rate of the steps')
    parser.add_argument('--blocks', action='store_true',
                        help='instead, time the strided depthwise blocks of the first of '
                             '--variants (forward and backward at --size and --batch) in '
                             'float32, in bfloat16 with the block kept in float32 (what '
                             'training does) and with bfloat16 kernels')
    parser.add_argument('--optim', action='store_true',
                        help="instead, time one optimizer step of the configs whose "
                             "paramwise_cfg makes one parameter group per tensor: mmengine's "
                             'groups, merged groups, merged groups with the fused kernel')


def segmentation_inputs(size: int, batch: int, num_classes: int, seed: int = 0) -> dict:
    """A batch of random uint8 images with random label maps (some pixels ignored, 255)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        # 16x16-pixel blocks of one class, as objects rather than noise
        labels = torch.randint(0, num_classes, (1, size // 16 + 1, size // 16 + 1), generator=g)
        labels = labels.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :size, :size]
        labels[:, :, :4] = 255
        s.gt_sem_seg = PixelData(data=labels)
        samples.append(s)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
              for _ in range(batch)]
    return dict(inputs=images, data_samples=samples)


def models_to_run(args: argparse.Namespace) -> list[dict]:
    """Name, task, config, batch and input side of every model the run compares."""
    det = dict(task='detection', batch=args.batch, size=args.size)
    seg = dict(task='segmentation', batch=args.seg_batch, size=args.seg_size)
    seg_options = {'model.data_preprocessor.size': (args.seg_size, args.seg_size),
                   'model.decode_head.num_classes': SEG_CLASSES,
                   'model.auxiliary_head.num_classes': SEG_CLASSES}
    runs = [dict(det, name=f'SSDLite-MobileOne-{v.upper()}', variant=v,
                 cfg=apis.mobileone_config('detection', v)) for v in args.variants]
    if args.peers and args.variants:
        runs.append(dict(det, name=f'SSDLite-{PEER}', variant=None,
                         cfg=apis.peer_config('detection')))
    runs += [dict(seg, name=f'DeepLabV3-MobileOne-{v.upper()}', variant=v,
                  cfg=apis.mobileone_config('segmentation', v, seg_options))
             for v in args.seg_variants]
    if args.peers and args.seg_variants:
        runs.append(dict(seg, name=f'DeepLabV3-{PEER}-D8', variant=None,
                         cfg=apis.peer_config('segmentation', seg_options)))
    return runs


def run(args: argparse.Namespace) -> dict:
    if args.blocks and args.optim:
        raise UsageError('--blocks and --optim are two different benchmarks: give one of them.')
    if args.blocks:
        from . import train_blocks
        return train_blocks.run(args)
    if args.optim:
        from . import train_optim
        return train_optim.run(args)
    from mmengine.optim import OptimWrapper

    from ..engine import CPUBF16OptimWrapper, require_cpu_bf16
    from ..utils.malloc import OPT_OUT, retain_freed_memory
    instructions = require_cpu_bf16('the bfloat16 columns cannot be measured on this machine')
    retained = retain_freed_memory()  # as tools/train.py trains
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs = models_to_run(args)
    if not runs:
        raise UsageError('Nothing to time: give --variants or --seg-variants a variant.')
    data = {'detection': detection_inputs(args.size, args.batch, 80, seed=1),
            'segmentation': segmentation_inputs(args.seg_size, args.seg_batch, SEG_CLASSES)}
    wrappers = {'fp32': OptimWrapper, 'bf16': CPUBF16OptimWrapper}
    steps = {}
    for r in runs:
        model = apis.build_model(r['cfg'])
        model.train()
        steps[r['name']] = {}
        for p in PRECISIONS:  # one model, two optimizers: the same weights in both precisions
            wrapper = wrappers[p](torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9))
            steps[r['name']][p] = functools.partial(model.train_step, data[r['task']], wrapper)
    print(f'Training throughput, fp32 vs bf16 autocast ({instructions}), '
          f'{torch.get_num_threads()} threads, {args.rounds} interleaved rounds; SSDLite at '
          f'{args.size}x{args.size}, batch {args.batch}; DeepLabV3 at '
          f'{args.seg_size}x{args.seg_size}, batch {args.seg_batch}')
    fns = {f'{name} {p}': step for name, by_precision in steps.items()
           for p, step in by_precision.items()}  # a model's two precisions side by side
    with CPULoad() as load:
        timed = time_side_by_side(fns, rounds=args.rounds, warmup=1, settle=0, inference=False)
    times = {name: {p: [ms / 1e3 for ms in timed[f'{name} {p}']['rounds_ms']]
                    for p in PRECISIONS} for name in steps}

    rows, table = [], []
    for r in runs:
        t = times[r['name']]
        ips = {p: r['batch'] / statistics.median(t[p]) for p in PRECISIONS}
        ratios = [f / b for f, b in zip(t['fp32'], t['bf16'])]
        ratio = statistics.median(ratios)
        rows.append(dict(model=r['name'], task=r['task'], variant=r['variant'],
                         batch=r['batch'], size=r['size'], fp32_images_per_s=ips['fp32'],
                         bf16_images_per_s=ips['bf16'], bf16_over_fp32=ratio,
                         bf16_over_fp32_rounds=ratios, fp32_s=t['fp32'], bf16_s=t['bf16']))
        table.append([r['name'], f'{r["size"]}x{r["size"]}', r['batch'], ips['fp32'],
                      ips['bf16'], f'{ratio:.2f}x', f'{min(ratios):.2f}-{max(ratios):.2f}x'])
    header = ['model', 'input', 'batch', 'fp32 img/s', 'bf16 img/s', 'bf16 / fp32',
              'rounds range']
    text = format_table(header, table)
    print(text)
    notes = [f'freed memory kept for the next step, as tools/train.py does: {retained} '
             f'({OPT_OUT}=system times glibc\'s defaults)']
    notes.append(f'other processes used {100 * load.others:.0f}% of the CPU meanwhile')
    if load.others > 0.1:
        notes.append('WARNING: other processes kept the CPU busy during the run; PyTorch\'s '
                     'threads wait for each other at every op, so steps slow down by several '
                     'times and the ratios are not trustworthy: rerun on an idle machine.')
    print('\n'.join(notes))
    return dict(benchmark='train', machine=machine_info(), bf16_instructions=instructions,
                rounds=args.rounds, lr=args.lr, freed_memory_kept=retained,
                others_load=load.others, rows=rows, notes=notes,
                table=text)
