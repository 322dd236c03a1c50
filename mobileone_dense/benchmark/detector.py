"""``tools/benchmark.py detector``: SSDLite-MobileOne S0-S4 against mmdet's SSDLite-MobileNetV2.

Two measurements, each taken side by side in one run (models interleaved, medians):

* end-to-end latency at 320x320, batch 1: ``model.test_step`` on a uint8 image, i.e. the data
  preprocessor (normalisation), the network and the post-processing (box decoding, score
  filtering and NMS), for the train-time model and the fused one. Fused means what a deployment
  does: MobileOne blocks reparameterized (:func:`~mobileone_dense.reparameterize_model`) and
  every remaining conv+BN pair folded (mmcv's ``fuse_conv_bn``, as mmdet's test tool does with
  ``--fuse-conv-bn``); the MobileNetV2 peer gets the same BN folding.
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

Every fused model is checked against its train-time model (raw head outputs) before timing.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping

import torch

from ..models import ARCHS
from ..reparam import reparameterize_model
from ..utils.timing import time_side_by_side
from .common import format_table, machine_info

PEER = 'MobileNetV2'
PEER_CONFIG = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'ssdlite'
VARIANTS = [v for v in ARCHS if v.startswith('s')]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='+', default=VARIANTS, choices=VARIANTS)
    parser.add_argument('--size', type=int, default=320, help='input side (%(default)s)')
    parser.add_argument('--rounds', type=int, default=30, help='timed runs per model')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--score-thr', type=float, default=0.0,
                        help='test_cfg.score_thr of every model (%(default)s: NMS at full load)')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--train-rounds', type=int, default=3,
                        help='timed training steps per model (after one untimed step); '
                             '0 skips the training measurement')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s choice)')


def build_detector(config: str, score_thr: float) -> torch.nn.Module:
    """A detector from a config with PyTorch's default initialisation (timing does not depend
    on the values; no pretrained download, no init log)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.hub import get_config
    register_all_modules()
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    if cfg.model.backbone.get('init_cfg', {}).get('type') == 'Pretrained':
        cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.score_thr = score_thr
    model = MODELS.build(cfg.model)
    model.eval()  # mmdet's MobileNetV2.train() returns None, so no chaining
    return model


def fuse(model: torch.nn.Module) -> torch.nn.Module:
    """Reparameterize MobileOne blocks, then fold the remaining conv+BN pairs."""
    from mmcv.cnn import fuse_conv_bn
    fused = reparameterize_model(model)  # a deep copy, in eval mode
    fuse_conv_bn(fused)
    return fused


def check_fused(model: torch.nn.Module, fused: torch.nn.Module, size: int) -> float:
    """Largest relative deviation of the fused model's raw head outputs (must be rounding)."""
    x = torch.rand(1, 3, size, size) * 4 - 2
    with torch.no_grad():
        expected, actual = model(x), fused(x)
    worst = 0.0
    for e_level, a_level in zip(expected, actual):
        for e, a in zip(e_level, a_level):
            worst = max(worst, ((a - e).abs().max() / e.abs().max().clamp_min(1e-12)).item())
    if worst > 1e-3:
        raise RuntimeError(f'fused model deviates by {worst:.1e} from the train-time one.')
    return worst


def _inputs(size: int, batch: int, num_classes: int, seed: int = 0) -> dict:
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


def time_training(steps: Mapping[str, Callable[[], object]],
                  rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds per training step of each callable, interleaved in a rotating order
    (:func:`time_side_by_side` runs under ``inference_mode``, which training cannot)."""
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # one untimed step each (allocations, lazy init)
        steps[n]()
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            steps[n]()
            times[n].append(time.perf_counter() - start)
        print(f'  training round {r + 1}/{rounds}', end='\r', flush=True)
    print(' ' * 30, end='\r')
    return {n: dict(median_s=statistics.median(t), min_s=min(t)) for n, t in times.items()}


def run(args: argparse.Namespace) -> dict:
    from mmengine.optim import OptimWrapper
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    configs = {PEER: PEER_CONFIG}
    configs.update({f'MobileOne-{v.upper()}': str(CONFIGS / f'mobileone_{v}.py')
                    for v in args.variants})
    models, fused, params, deviation = {}, {}, {}, {}
    for name, config in configs.items():
        models[name] = build_detector(config, args.score_thr)
        fused[name] = fuse(models[name])
        deviation[name] = check_fused(models[name], fused[name], args.size)
        params[name] = sum(p.numel() for p in fused[name].parameters()) / 1e6

    print(f'SSDLite end-to-end latency at {args.size}x{args.size}, batch 1 (preprocessing, '
          f'network, NMS), {torch.get_num_threads()} threads, {args.rounds} interleaved rounds')
    data = _inputs(args.size, 1, 80)
    peer = fused[PEER]
    with torch.no_grad():
        tensor = peer.data_preprocessor(data, False)['inputs']
        shared = peer._forward(tensor)  # the head outputs every model post-processes

    def replace_outputs(module, inputs, output):
        return shared

    fns = {}
    for name in configs:
        fns[f'{name} train-time'] = lambda m=models[name]: m.test_step(data)
        fns[f'{name} fused'] = lambda m=fused[name]: m.test_step(data)
        fns[f'{name} fused network'] = lambda m=fused[name]: m._forward(tensor)
    hooks = [m.bbox_head.register_forward_hook(replace_outputs)
             for group in (models, fused) for m in group.values()]
    try:
        latency = time_side_by_side(fns, rounds=args.rounds, warmup=args.warmup)
    finally:
        for hook in hooks:
            hook.remove()

    throughput = {}
    if args.train_rounds > 0:
        print(f'SSDLite training throughput at {args.size}x{args.size}, batch '
              f'{args.train_batch} (forward, loss, backward, SGD step), '
              f'{args.train_rounds} interleaved rounds')
        batch = _inputs(args.size, args.train_batch, 80, seed=1)
        steps = {}
        for name, model in models.items():
            model.train()
            wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
            steps[name] = lambda m=model, w=wrapper: m.train_step(batch, w)
        timed = time_training(steps, args.train_rounds)
        throughput = {n: dict(t, images_per_s=args.train_batch / t['median_s'])
                      for n, t in timed.items()}

    peer_fused = latency[f'{PEER} fused']['median_ms']
    peer_network = latency[f'{PEER} fused network']['median_ms']
    rows, table = [], []
    for name in configs:
        train_ms = latency[f'{name} train-time']['median_ms']
        fused_ms = latency[f'{name} fused']['median_ms']
        network_ms = latency[f'{name} fused network']['median_ms']
        row = dict(model=f'SSDLite-{name}', params_m=params[name], train_time_ms=train_ms,
                   fused_ms=fused_ms, fused_vs_mobilenetv2=fused_ms / peer_fused,
                   fused_network_ms=network_ms,
                   fused_network_vs_mobilenetv2=network_ms / peer_network,
                   fused_max_deviation=deviation[name])
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
