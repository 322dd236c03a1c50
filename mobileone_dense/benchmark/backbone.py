"""``tools/benchmark.py backbone``: unfused vs fused MobileOne backbones against mmdet's
MobileNetV2, side by side at each input size."""
from __future__ import annotations

import argparse

import torch

from .. import apis
from ..export.fusion import fuse
from ..models import MobileOne
from ..utils.timing import time_side_by_side
from .common import add_timing_arguments, format_table, machine_info

PEER = apis.PEER_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='+', default=list(apis.VARIANTS),
                        choices=apis.VARIANTS)
    parser.add_argument('--sizes', nargs='+', type=int, default=[224, 320])
    add_timing_arguments(parser, rounds=50, warmup=5)


def build_models(variants) -> dict[str, torch.nn.Module]:
    """The peer, then each variant's train-time and fused backbone (stage4 output)."""
    models = {PEER: apis.mobilenet_v2_backbone()}
    for v in variants:
        train_time = MobileOne(v, out_indices=(4, )).eval()
        models[f'{v} unfused'] = train_time
        models[f'{v} fused'] = fuse(train_time)
    return models


def run(args: argparse.Namespace) -> dict:
    models = build_models(args.variants)
    results = {}
    for size in args.sizes:
        print(f'backbone latency at {size}x{size}, batch 1, {torch.get_num_threads()} threads, '
              f'{args.rounds} interleaved rounds')
        x = torch.rand(1, 3, size, size)
        fns = {name: (lambda m=m, x=x: m(x)) for name, m in models.items()}
        results[size] = time_side_by_side(fns, rounds=args.rounds, warmup=args.warmup)

    rows, table = [], []
    for v in args.variants:
        row = dict(variant=v)
        for size in args.sizes:
            r = results[size]
            unfused, fused = r[f'{v} unfused']['median_ms'], r[f'{v} fused']['median_ms']
            peer = r[PEER]['median_ms']
            row[str(size)] = dict(unfused_ms=unfused, fused_ms=fused, speedup=unfused / fused,
                                  fused_vs_mobilenetv2=fused / peer)
        rows.append(row)
        table.append([v] + [x for s in args.sizes for x in (
            row[str(s)]['unfused_ms'], row[str(s)]['fused_ms'], row[str(s)]['speedup'],
            row[str(s)]['fused_vs_mobilenetv2'])])
    table.append([PEER] + [x for s in args.sizes for x in (
        results[s][PEER]['median_ms'], results[s][PEER]['median_ms'], 1.0, 1.0)])
    header = ['backbone'] + [h for s in args.sizes for h in (
        f'{s} unfused ms', f'{s} fused ms', f'{s} unfused/fused', f'{s} fused/MNv2')]
    text = format_table(header, table)
    print(text)
    return dict(benchmark='backbone', machine=machine_info(), rounds=args.rounds,
                sizes=args.sizes, rows=rows, raw={str(k): v for k, v in results.items()},
                table=text)
