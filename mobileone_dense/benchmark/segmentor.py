"""``tools/benchmark.py segmentor``: DeepLabV3-MobileOne (train-time and fused) against mmseg's
DeepLabV3-MobileNetV2-D8, whole segmentor and backbone alone, at 512x512.

Every model runs the inference path of mmseg's ``EncoderDecoder`` (backbone, ASPP head, logits
resized to the input; the auxiliary head only trains) on one 512x512 image. The segmentors and
their backbones are timed in one interleaved run, so the backbone's share of each segmentor is
measured under the same load. Weights are random (latency does not depend on them), so nothing
is downloaded.
"""
from __future__ import annotations

import argparse

import torch

from .. import apis
from ..export.fusion import fuse
from ..utils.timing import time_side_by_side
from .common import SEG_OPTIONS, add_timing_arguments, format_table, machine_info

PEER = f'{apis.PEER_NAME}-D8'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='+', default=list(apis.PAPER_VARIANTS),
                        choices=apis.PAPER_VARIANTS)
    parser.add_argument('--size', type=int, default=512, help='square input side')
    add_timing_arguments(parser, rounds=10, warmup=1, stat='median', helps=dict(
        rounds='timed runs per model (one round of all 22 models: ~25 s at 512)',
        stat='statistic of the rounds in the table (min resists a busy machine)'))


def build_segmentors(variants) -> dict[str, torch.nn.Module]:
    """The peer (21 classes, as the VOC configs), then each variant train-time and fused
    (MobileOne blocks reparameterized), random weights."""
    segmentors = {PEER: apis.build_model(apis.peer_config('segmentation', SEG_OPTIONS))}
    for v in variants:
        train_time = apis.build_model(apis.mobileone_config('segmentation', v, SEG_OPTIONS))
        segmentors[f'{v} train-time'] = train_time
        segmentors[f'{v} fused'] = fuse(train_time)
    return segmentors


def _describe(ms: dict[str, float], name: str) -> dict:
    whole, backbone = ms[name], ms[f'{name} backbone']
    return dict(segmentor_ms=whole, backbone_ms=backbone, head_ms=whole - backbone,
                backbone_share=backbone / whole, head_vs_backbone=(whole - backbone) / backbone)


def run(args: argparse.Namespace) -> dict:
    size = args.size
    x = torch.rand(1, 3, size, size)
    metas = [dict(img_shape=(size, size))]
    fns = {}
    for name, model in build_segmentors(args.variants).items():
        fns[name] = lambda m=model: m.encode_decode(x, metas)
        fns[f'{name} backbone'] = lambda m=model: m.backbone(x)
    print(f'DeepLabV3 latency at {size}x{size}, batch 1, {torch.get_num_threads()} threads, '
          f'{args.stat} of {args.rounds} interleaved rounds of {len(fns)} models')
    raw = time_side_by_side(fns, rounds=args.rounds, warmup=args.warmup)
    ms = {name: r[f'{args.stat}_ms'] for name, r in raw.items()}

    peer = _describe(ms, PEER)
    rows, table = [], []
    for v in args.variants:
        unfused, fused = _describe(ms, f'{v} train-time'), _describe(ms, f'{v} fused')
        row = dict(variant=v, train_time=unfused, fused=fused,
                   speedup=unfused['segmentor_ms'] / fused['segmentor_ms'],
                   backbone_speedup=unfused['backbone_ms'] / fused['backbone_ms'],
                   fused_vs_mobilenetv2=fused['segmentor_ms'] / peer['segmentor_ms'])
        rows.append(row)
        table.append([f'MobileOne-{v.upper()}', unfused['segmentor_ms'], fused['segmentor_ms'],
                      f'{row["speedup"]:.2f}x', unfused['backbone_ms'], fused['backbone_ms'],
                      f'{unfused["backbone_share"]:.0%} / {fused["backbone_share"]:.0%}',
                      fused['head_ms'], f'{fused["head_vs_backbone"]:.1f}x',
                      f'{row["fused_vs_mobilenetv2"]:.2f}x'])
    table.append([PEER, peer['segmentor_ms'], peer['segmentor_ms'], '-', peer['backbone_ms'],
                  peer['backbone_ms'], f'{peer["backbone_share"]:.0%}', peer['head_ms'],
                  f'{peer["head_vs_backbone"]:.1f}x', '1.00x'])
    header = ['DeepLabV3 backbone', 'train-time ms', 'fused ms', 'speedup', 'backbone ms (train)',
              'backbone ms (fused)', 'backbone share (train / fused)', 'ASPP + rest ms (fused)',
              'head / backbone (fused)', 'fused vs MNv2']
    text = format_table(header, table)
    print(text)
    return dict(benchmark='segmentor', machine=machine_info(), size=size, rounds=args.rounds,
                stat=args.stat,
                peer=dict(name=PEER, config=apis.PEER_CONFIGS['segmentation'], **peer),
                rows=rows, raw=raw, table=text)
