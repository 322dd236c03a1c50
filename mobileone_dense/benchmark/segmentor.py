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
from pathlib import Path

import torch

from ..models import ARCHS
from ..reparam import reparameterize_model
from ..utils.timing import time_side_by_side
from .common import format_table, machine_info

VARIANTS = ('s0', 's1', 's2', 's3', 's4')
CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'deeplabv3'
PEER = 'MobileNetV2-D8'
PEER_CONFIG = 'mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=[v for v in ARCHS if v in VARIANTS])
    parser.add_argument('--size', type=int, default=512, help='square input side')
    parser.add_argument('--rounds', type=int, default=10,
                        help='timed runs per model (one round of all 22 models: ~25 s at 512)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--stat', choices=['median', 'min'], default='median',
                        help='statistic of the rounds in the table (min resists a busy machine)')


def _build(cfg) -> torch.nn.Module:
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = revert_sync_batchnorm(MODELS.build(cfg))
    model.eval()
    return model


def mobileone_segmentor(variant: str, num_classes: int = 21) -> torch.nn.Module:
    """DeepLabV3-MobileOne of ``configs/deeplabv3/mobileone_{variant}_voc.py``, random weights."""
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIGS / f'mobileone_{variant}_voc.py').model
    cfg.backbone.init_cfg = None
    cfg.decode_head.num_classes = cfg.auxiliary_head.num_classes = num_classes
    return _build(cfg)


def mobilenet_v2_segmentor(num_classes: int = 21) -> torch.nn.Module:
    """mmseg's DeepLabV3-MobileNetV2-D8 (ASPP on its 320-channel stride-8 output), random
    weights, ``num_classes`` outputs."""
    import mmseg
    from mmengine.config import Config
    path = Path(mmseg.__file__).parent / '.mim' / 'configs' / PEER_CONFIG
    cfg = Config.fromfile(path).model
    cfg.pretrained = None  # mmcls://mobilenet_v2 would be downloaded
    cfg.decode_head.num_classes = cfg.auxiliary_head.num_classes = num_classes
    return _build(cfg)


def run(args: argparse.Namespace) -> dict:
    size = args.size
    x = torch.rand(1, 3, size, size)
    metas = [dict(img_shape=(size, size))]
    segmentors = {PEER: mobilenet_v2_segmentor()}
    for v in args.variants:
        train_time = mobileone_segmentor(v)
        segmentors[f'{v} train-time'] = train_time
        segmentors[f'{v} fused'] = reparameterize_model(train_time)
    fns = {}
    for name, model in segmentors.items():
        fns[name] = lambda m=model: m.encode_decode(x, metas)
        fns[f'{name} backbone'] = lambda m=model: m.backbone(x)
    print(f'DeepLabV3 latency at {size}x{size}, batch 1, {torch.get_num_threads()} threads, '
          f'{args.stat} of {args.rounds} interleaved rounds of {len(fns)} models')
    raw = time_side_by_side(fns, rounds=args.rounds, warmup=args.warmup)
    ms = {name: r[f'{args.stat}_ms'] for name, r in raw.items()}

    def describe(name: str) -> dict:
        whole, backbone = ms[name], ms[f'{name} backbone']
        return dict(segmentor_ms=whole, backbone_ms=backbone, head_ms=whole - backbone,
                    backbone_share=backbone / whole, head_vs_backbone=(whole - backbone) / backbone)

    peer = describe(PEER)
    rows, table = [], []
    for v in args.variants:
        unfused, fused = describe(f'{v} train-time'), describe(f'{v} fused')
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
                peer=dict(name=PEER, config=f'mmseg::{PEER_CONFIG}', **peer), rows=rows,
                raw=raw, table=text)
