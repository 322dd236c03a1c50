"""``tools/benchmark.py detector``: SSDLite-MobileOne S0-S4 against mmdet's SSDLite-MobileNetV2.

Two measurements, each taken side by side in one run (models interleaved, medians):

* end-to-end latency at 320x320, batch 1: ``model.test_step`` on a uint8 image, i.e. the data
  preprocessor (normalisation), the network and the post-processing (box decoding, score
  filtering and NMS), for the train-time model and the fused one. Fused means what a deployment
  does: MobileOne blocks reparameterized and every remaining conv+BN pair folded
  (:func:`~mobileone_dense.export.fusion.fuse` with ``fold_bn=True``, as mmdet's test tool does
  with ``--fuse-conv-bn``); the MobileNetV2 peer gets the same BN folding.
  The post-processing is the same code for every model on head outputs of the same shapes (same
  anchors, classes and levels), but its cost depends on the values: how many boxes pass the
  score threshold and how many NMS keeps. With untrained weights those values are arbitrary and
  shift the totals by several milliseconds from one random initialisation to the next. So every
  model computes its own head outputs (their cost counts) and then post-processes one shared
  set of outputs (the peer's, through a forward hook on the head), at score threshold 0 by
  default: NMS sees its full ``nms_pre`` candidates per level, equally for every model;
* network latency: ``model._forward`` on the preprocessed tensor (backbone, neck and head, no
  post-processing), the part that differs between the models;
* training throughput (images/s): ``model.train_step`` (preprocessing, forward, loss, backward
  and an SGD step) on a batch of random images with boxes.

Every fused model is checked against its train-time model (raw head outputs,
:func:`~mobileone_dense.export.numerics.check_fused`) before timing.
"""
from __future__ import annotations

import argparse
import contextlib

import torch

from .. import apis
from ..export.fusion import fuse
from ..export.numerics import check_fused, make_image
from ..tasks import task_of
from ..utils.timing import time_side_by_side
from .common import add_timing_arguments, format_table, machine_info, num_params

PEER = apis.PEER_NAME
NUM_CLASSES = 80  # COCO, as every SSDLite config here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='+', default=list(apis.PAPER_VARIANTS),
                        choices=apis.PAPER_VARIANTS)
    parser.add_argument('--size', type=int, default=320, help='input side (%(default)s)')
    add_timing_arguments(parser, rounds=30, warmup=3, threads=None)
    parser.add_argument('--score-thr', type=float, default=0.0,
                        help='test_cfg.score_thr of every model (%(default)s: NMS at full load)')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--train-rounds', type=int, default=3,
                        help='timed training steps per model (after one untimed step); '
                             '0 skips the training measurement')


def _inputs(size: int, batch: int, num_classes: int, seed: int = 0) -> dict:
    """A batch of random uint8 images, each with four random boxes, as ``test_step`` and
    ``train_step`` take it."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        scale_factor=(1.0, 1.0)))
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = torch.rand(4, 2, generator=g) * size * 0.35 + 16
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                      labels=torch.randint(0, num_classes, (4, ), generator=g))
        samples.append(s)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
              for _ in range(batch)]
    return dict(inputs=images, data_samples=samples)


def build_detectors(args: argparse.Namespace) -> dict[str, dict]:
    """Name -> train-time model, fused model, fused params and the fused model's deviation."""
    options = {'model.test_cfg.score_thr': args.score_thr}
    configs = {PEER: apis.peer_config('detection', options)}
    configs.update({f'MobileOne-{v.upper()}': apis.mobileone_config('detection', v, options)
                    for v in args.variants})
    image = make_image((args.size, args.size))
    detectors = {}
    for name, cfg in configs.items():
        model = apis.build_model(cfg)
        fused = fuse(model, fold_bn=True)
        inputs, _ = task_of(cfg).preprocess(model, image)
        agreement, _ = check_fused(model, fused, inputs)
        detectors[name] = dict(model=model, fused=fused, params=num_params(fused) / 1e6,
                               deviation=agreement.max_rel)
    return detectors


@contextlib.contextmanager
def shared_head_outputs(detectors: dict[str, dict], data: dict):
    """Make every detector's head return the fused peer's outputs on ``data`` (see the module
    docstring); yields the preprocessed input tensor."""
    peer = detectors[PEER]['fused']
    with torch.no_grad():
        tensor = peer.data_preprocessor(data, False)['inputs']
        shared = peer._forward(tensor)
    hooks = [d[kind].bbox_head.register_forward_hook(lambda module, inputs, output: shared)
             for d in detectors.values() for kind in ('model', 'fused')]
    try:
        yield tensor
    finally:
        for hook in hooks:
            hook.remove()


def time_latency(args: argparse.Namespace, detectors: dict[str, dict]) -> dict[str, dict]:
    print(f'SSDLite end-to-end latency at {args.size}x{args.size}, batch 1 (preprocessing, '
          f'network, NMS), {torch.get_num_threads()} threads, {args.rounds} interleaved rounds')
    data = _inputs(args.size, 1, NUM_CLASSES)
    with shared_head_outputs(detectors, data) as tensor:
        fns = {}
        for name, d in detectors.items():
            fns[f'{name} train-time'] = lambda m=d['model']: m.test_step(data)
            fns[f'{name} fused'] = lambda m=d['fused']: m.test_step(data)
            fns[f'{name} fused network'] = lambda m=d['fused']: m._forward(tensor)
        return time_side_by_side(fns, rounds=args.rounds, warmup=args.warmup)


def time_training(args: argparse.Namespace, detectors: dict[str, dict]) -> dict[str, dict]:
    """Images/s of ``train_step`` of each train-time model, interleaved (one untimed step
    first)."""
    from mmengine.optim import OptimWrapper
    print(f'SSDLite training throughput at {args.size}x{args.size}, batch {args.train_batch} '
          f'(forward, loss, backward, SGD step), {args.train_rounds} interleaved rounds')
    batch = _inputs(args.size, args.train_batch, NUM_CLASSES, seed=1)
    steps = {}
    for name, d in detectors.items():
        model = d['model']
        model.train()
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
        steps[name] = lambda m=model, w=wrapper: m.train_step(batch, w)
    timed = time_side_by_side(steps, rounds=args.train_rounds, warmup=1, settle=0,
                              inference=False)
    return {n: dict(median_s=t['median_ms'] / 1e3, min_s=t['min_ms'] / 1e3,
                    images_per_s=args.train_batch * 1e3 / t['median_ms'])
            for n, t in timed.items()}


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    detectors = build_detectors(args)
    latency = time_latency(args, detectors)
    throughput = time_training(args, detectors) if args.train_rounds > 0 else {}

    peer_fused = latency[f'{PEER} fused']['median_ms']
    peer_network = latency[f'{PEER} fused network']['median_ms']
    rows, table = [], []
    for name, d in detectors.items():
        train_ms = latency[f'{name} train-time']['median_ms']
        fused_ms = latency[f'{name} fused']['median_ms']
        network_ms = latency[f'{name} fused network']['median_ms']
        row = dict(model=f'SSDLite-{name}', params_m=d['params'], train_time_ms=train_ms,
                   fused_ms=fused_ms, fused_vs_mobilenetv2=fused_ms / peer_fused,
                   fused_network_ms=network_ms,
                   fused_network_vs_mobilenetv2=network_ms / peer_network,
                   fused_max_deviation=d['deviation'])
        if throughput:
            row['train_images_per_s'] = throughput[name]['images_per_s']
        rows.append(row)
        table.append([row['model'], row['params_m'], train_ms, fused_ms,
                      row['fused_vs_mobilenetv2'], network_ms,
                      row['fused_network_vs_mobilenetv2']]
                     + ([row['train_images_per_s']] if throughput else []))
    header = ['detector', 'params (M, fused)', 'train-time ms', 'fused ms', 'fused / MNV2',
              'fused network ms', 'network / MNV2']
    header += [f'train img/s (batch {args.train_batch})'] if throughput else []
    text = format_table(header, table)
    print(text)
    return dict(benchmark='detector', machine=machine_info(), size=args.size,
                rounds=args.rounds, score_thr=args.score_thr, train_batch=args.train_batch,
                train_rounds=args.train_rounds, rows=rows, latency=latency,
                training=throughput, table=text)
