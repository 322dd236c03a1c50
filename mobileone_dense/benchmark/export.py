"""``tools/benchmark.py export``: train-time vs fused PyTorch vs fused ONNX Runtime, with MACs
and the share of the machine's matrix-multiply peak.

For the S0-S4 backbones, the SSDLite detectors and the DeepLabV3 segmentors (each group with its
MobileNetV2 peer: mmdet's backbone, mmdet's SSDLite, mmseg's DeepLabV3-D8), batch 1: the
train-time model and the fused model in PyTorch, and the fused model exported to ONNX (as
``tools/export.py`` writes it) in ONNX Runtime. Detectors and segmentors run from the raw image
to their final predictions (boxes, scores, labels after NMS; logits and class map), the way
:mod:`mobileone_dense.export` exports them.

Every group of models is timed in one interleaved run (:func:`time_side_by_side`) together with
a large sgemm in PyTorch and in ONNX Runtime, so "% of peak" compares rates measured under the
same load. All ONNX Runtime sessions share one thread pool, as in a process serving several
models: with a pool each, the workers of the session that ran last spin against the one being
timed (fused S1 read 9.6 ms interleaved with two other sessions that way, 5.4 ms on a shared
pool, 5.1 ms alone). Each model gets three settling calls before its timed call (5.3 ms for S1
in the same interleaving, against 5.4 ms with one); the sgemm gets one. Ratios and shares of the
peak are medians of per-round ratios.

MACs are counted by ptflops (its aten backend: every convolution and matmul that actually
runs), not by hand; :func:`count_image_macs` also counts those that touch the image. Weights
are random (latency does not depend on them): nothing is downloaded. The run also draws
``docs/latency.png``.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..export import (
    DetectorExport,
    SegmentorExport,
    build_model,
    export_onnx,
    load_config,
    ort_session,
    ort_use_shared_pool,
)
from ..models import MobileOne
from ..reparam import reparameterize_model
from ..utils.timing import time_side_by_side
from .common import format_table, machine_info

VARIANTS = ('s0', 's1', 's2', 's3', 's4')
ROOT = Path(__file__).resolve().parents[2]
PEER = 'MobileNetV2'
PEER_CONFIGS = dict(
    ssdlite='ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
    deeplabv3='mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py')
PEAK_NAMES = ('sgemm torch', 'sgemm onnx')
#: Groups whose calls take long enough (about a second) to need one warmup and settling call.
LONG_CALL_GROUPS = ('deeplabv3', )
#: Targets of issue 5 on this machine.
PEAK_TARGET, RATIO_TARGET = 0.80, 0.60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='*', default=list(VARIANTS), choices=VARIANTS,
                        help='backbones (MobileNetV2 is always added)')
    parser.add_argument('--det-variants', nargs='*', default=list(VARIANTS), choices=VARIANTS,
                        help='SSDLite detectors (configs/ssdlite/mobileone_*.py)')
    parser.add_argument('--seg-variants', nargs='*', default=list(VARIANTS), choices=VARIANTS,
                        help='DeepLabV3 segmentors (configs/deeplabv3/mobileone_*_voc.py); '
                             'each costs ~1 s per run at 512x512')
    parser.add_argument('--backbone-size', type=int, default=224)
    parser.add_argument('--det-size', type=int, default=320)
    parser.add_argument('--seg-size', type=int, default=512)
    parser.add_argument('--rounds', type=int, default=30, help='timed runs per model')
    parser.add_argument('--seg-rounds', type=int, default=5,
                        help='timed runs per segmentor (they are slow)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2,
                        help='PyTorch threads and ONNX Runtime intra-op threads')
    parser.add_argument('--ort-pool', choices=['shared', 'per-session'], default='shared',
                        help='shared: all ONNX Runtime sessions run on one thread pool, as in a '
                             'process that serves several models, so that the idle workers of '
                             'one session do not spin against the next one timed; per-session: '
                             'a pool each, spinning as --ort-spinning says')
    parser.add_argument('--ort-spinning', choices=['on', 'off'], default='on',
                        help='with --ort-pool per-session: worker threads spin between ops '
                             "(ONNX Runtime's default; the shared pool always spins)")
    parser.add_argument('--settle', type=int, default=3,
                        help='untimed calls of a model right before each timed one, so that it '
                             'is timed warm, in its steady state. At most 1 for the sgemm and '
                             'the DeepLabV3 group: their calls are long enough to settle in one, '
                             'and more only keeps the cores under sustained load, which lowers '
                             'their clock (the sgemm loses about 4%% back to back)')
    parser.add_argument('--peak-size', type=int, default=2048, help='side of the sgemm')
    parser.add_argument('--stat', choices=['median', 'min'], default='median',
                        help='statistic of the rounds for the latencies in the table and the '
                             'picture (min resists a busy machine; the JSON has both). Ratios and '
                             'shares of the peak are always medians of per-round ratios')
    parser.add_argument('--work-dir', default='work_dirs/benchmark/export',
                        help='where the ONNX files go')
    parser.add_argument('--plot', default='docs/latency.png', help="'' for no picture")


# ------------------------------------------------------------------------------------ models
def _mobilenet_v2() -> nn.Module:
    from mmdet.models.backbones import MobileNetV2
    model = MobileNetV2(out_indices=(7, ))
    model.eval()  # mmdet's MobileNetV2.train() does not return self, so .eval() gives None
    return model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass, counted by ptflops' aten backend."""
    from ptflops import get_model_complexity_info
    with open(os.devnull, 'w') as devnull:
        macs, _ = get_model_complexity_info(
            model, tuple(image.shape[1:]), as_strings=False, print_per_layer_stat=False,
            backend='aten', input_constructor=lambda _: dict(x=image.clone()), ost=devnull)
    if macs is None:
        raise RuntimeError(f'ptflops could not count the MACs of {type(model).__name__}.')
    model.eval()
    return int(macs)


def _taps_inside(n_in: int, n_out: int, kernel: int, stride: int, padding: int,
                 dilation: int) -> int:
    """(output position, kernel tap) pairs of one axis whose input index is inside the input."""
    idx = (torch.arange(n_out)[:, None] * stride - padding
           + torch.arange(kernel)[None, :] * dilation)
    return int(((idx >= 0) & (idx < n_in)).sum())


def count_image_macs(model: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of the convolutions that touch the input, not its zero padding.

    ptflops counts every tap of every kernel. A dilated convolution on a small map has many
    taps in the padding (DeepLabV3's ASPP, dilations 12/24/36 on a 64x64 map at 512x512 input:
    a quarter of the whole segmentor's MACs), and ONNX Runtime's kernels skip them. This is the
    work a runtime cannot skip.
    """
    total = 0

    def hook(conv: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        if isinstance(conv.padding, str):  # 'same' / 'valid': fall back to every tap
            total += output.numel() * conv.weight[0].numel()
            return
        x = inputs[0]
        taps = 1
        for axis in (0, 1):
            taps *= _taps_inside(x.shape[2 + axis], output.shape[2 + axis],
                                 conv.kernel_size[axis], conv.stride[axis],
                                 conv.padding[axis], conv.dilation[axis])
        total += output.shape[0] * taps * conv.out_channels * (conv.in_channels // conv.groups)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for h in handles:
            h.remove()
    return total


class _Call(nn.Module):
    """``forward(x)`` for ptflops' input_constructor (it passes keyword arguments)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model(x)


def _sgemm_onnx(n: int, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper
    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in 'ABC']
    graph = helper.make_graph([helper.make_node('MatMul', ['A', 'B'], ['C'])], 'sgemm',
                              spec[:2], spec[2:])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                                ir_version=8), str(path))
    return path


class Entry:
    """One model in its three forms: train-time and fused in PyTorch, fused in ONNX Runtime."""

    def __init__(self, group: str, name: str, train: nn.Module, fused: nn.Module,
                 image: torch.Tensor, onnx_path: Path, ort_options: dict,
                 reparam: bool = True) -> None:
        self.group, self.name, self.reparam = group, name, reparam
        self.image, self.array = image, image.numpy()
        self.params_train, self.params_fused = _params(train), _params(fused)
        self.macs_train = count_macs(_Call(train), image)
        self.macs_fused = count_macs(_Call(fused), image) if reparam else self.macs_train
        self.macs_image = count_image_macs(fused, image)
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(fused, image, onnx_path)
        self.session = ort_session(onnx_path, **ort_options)
        self.fns: dict[str, Callable[[], object]] = {}
        if reparam:
            self.fns[f'{name} train'] = lambda: train(image)
        self.fns[f'{name} fused'] = lambda: fused(image)
        self.fns[f'{name} onnx'] = lambda: self.session.run(None, {'image': self.array})


def _backbones(args, ort_options: dict) -> list[Entry]:
    image = torch.rand(1, 3, args.backbone_size, args.backbone_size)
    work = Path(args.work_dir)
    entries = []
    for v in args.variants:
        train = MobileOne(v, out_indices=(4, )).eval()
        entries.append(Entry('backbone', v, train, reparameterize_model(train), image,
                             work / f'backbone_{v}.onnx', ort_options))
    mnv2 = _mobilenet_v2()
    entries.append(Entry('backbone', PEER, mnv2, mnv2, image, work / 'backbone_mnv2.onnx',
                         ort_options, reparam=False))
    return entries


def _peer_config(kind: str):
    """mmdet's SSDLite-MobileNetV2 or mmseg's DeepLabV3-MobileNetV2-D8 (21 classes)."""
    import mmdet
    import mmseg
    if kind == 'ssdlite':
        return load_config(Path(mmdet.__file__).parent / '.mim/configs' / PEER_CONFIGS[kind])
    cfg = load_config(Path(mmseg.__file__).parent / '.mim/configs' / PEER_CONFIGS[kind])
    cfg.model.decode_head.num_classes = cfg.model.auxiliary_head.num_classes = 21
    return cfg


def _dense(args, ort_options: dict, kind: str) -> list[Entry]:
    variants, size = ((args.det_variants, args.det_size) if kind == 'ssdlite'
                      else (args.seg_variants, args.seg_size))
    image = (torch.rand(1, 3, size, size) * 255).round()
    wrap = ((lambda m: DetectorExport(m, (size, size)).eval()) if kind == 'ssdlite'
            else (lambda m: SegmentorExport(m).eval()))
    work = Path(args.work_dir)
    entries = []
    for v in variants:
        config = (ROOT / 'configs/ssdlite' / f'mobileone_{v}.py' if kind == 'ssdlite'
                  else ROOT / 'configs/deeplabv3' / f'mobileone_{v}_voc.py')
        train = build_model(load_config(config))
        entries.append(Entry(kind, v, wrap(train), wrap(reparameterize_model(train)), image,
                             work / f'{kind}_{v}.onnx', ort_options))
    peer = wrap(build_model(_peer_config(kind)))
    entries.append(Entry(kind, PEER, peer, peer, image, work / f'{kind}_mnv2.onnx', ort_options,
                         reparam=False))
    return entries


# ------------------------------------------------------------------------------------ timing
class _Load:
    """Share of the machine's CPU time that other processes used while we measured."""

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        self.stop = self._sample()

    @staticmethod
    def _sample():
        with open('/proc/stat') as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        ours = resource.getrusage(resource.RUSAGE_SELF)
        tick = os.sysconf('SC_CLK_TCK')
        busy = (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait
        return time.monotonic(), busy, ours.ru_utime + ours.ru_stime

    @property
    def others(self) -> float:
        wall = self.stop[0] - self.start[0]
        busy = self.stop[1] - self.start[1]
        ours = self.stop[2] - self.start[2]
        return max(0.0, busy - ours) / (wall * (os.cpu_count() or 1))


def _peak_fns(args, ort_options: dict) -> dict[str, Callable[[], object]]:
    n = args.peak_size
    a, b = torch.rand(n, n), torch.rand(n, n)
    an, bn = a.numpy(), b.numpy()
    session = ort_session(_sgemm_onnx(n, Path(args.work_dir) / f'sgemm_{n}.onnx'),
                          **ort_options)
    return dict(zip(PEAK_NAMES, (lambda: torch.mm(a, b),
                                 lambda: session.run(None, {'A': an, 'B': bn}))))


def paired_median(fn: Callable[..., float], *series: list[float]) -> float:
    """Median over rounds of ``fn`` applied to the candidates' times in the same round."""
    return statistics.median(fn(*values) for values in zip(*series))


def share_of_peak(macs: int, times_ms: list[float], peaks: list[float]) -> float:
    """Median over rounds of the rate (GMAC/s) of ``macs`` in ``times_ms``, in % of that
    round's peak."""
    return 100 * paired_median(lambda t, p: macs / t / 1e6 / p, times_ms, peaks)


def _settles(fns: dict, long_calls: bool, settle: int) -> dict[str, int]:
    return {name: min(settle, 1) if long_calls or name in PEAK_NAMES else settle
            for name in fns}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    ort_options = dict(threads=args.threads, spinning=args.ort_spinning == 'on',
                       shared_pool=args.ort_pool == 'shared')
    if ort_options['shared_pool']:
        ort_use_shared_pool(args.threads)
    groups = {}
    print('building, counting MACs and exporting to ONNX ...')
    if args.variants:
        groups['backbone'] = (_backbones(args, ort_options), args.rounds, args.backbone_size)
    if args.det_variants:
        groups['ssdlite'] = (_dense(args, ort_options, 'ssdlite'), args.rounds, args.det_size)
    if args.seg_variants:
        groups['deeplabv3'] = (_dense(args, ort_options, 'deeplabv3'), args.seg_rounds,
                               args.seg_size)
    peak_fns = _peak_fns(args, ort_options)
    n3 = args.peak_size ** 3

    rows, raw, loads = [], {}, {}
    for group, (entries, rounds, size) in groups.items():
        fns = dict(peak_fns)
        for e in entries:
            fns.update(e.fns)
        print(f'{group} at {size}x{size}: {len(fns)} candidates, {rounds} interleaved rounds, '
              f'batch 1, {args.threads} threads')
        long_calls = group in LONG_CALL_GROUPS
        with _Load() as load:
            result = time_side_by_side(fns, rounds=rounds,
                                       warmup=min(args.warmup, 1) if long_calls else args.warmup,
                                       settle=_settles(fns, long_calls, args.settle))
        raw[group], loads[group] = result, load.others
        stat = f'{args.stat}_ms'
        peak = {k: n3 / result[f'sgemm {k}'][stat] / 1e6 for k in ('torch', 'onnx')}
        # Ratios pair the candidates round by round (a round takes a second or two), then take
        # the median: the machine's speed drifts by several percent over minutes.
        per_round = {name: r['rounds_ms'] for name, r in result.items()}
        peak_rounds = [n3 / min(a, b) / 1e6
                       for a, b in zip(per_round['sgemm torch'], per_round['sgemm onnx'])]
        peak_onnx_rounds = [n3 / t / 1e6 for t in per_round['sgemm onnx']]
        for e in entries:
            ms = {k: result[f'{e.name} {k}'][stat] for k in ('train', 'fused', 'onnx')
                  if f'{e.name} {k}' in result}
            ms.setdefault('train', ms['fused'])
            onnx_r, fused_r = per_round[f'{e.name} onnx'], per_round[f'{e.name} fused']
            train_r = per_round.get(f'{e.name} train', fused_r)

            rows.append(dict(
                group=group, model=e.name, size=size, reparam=e.reparam,
                params_train_m=e.params_train / 1e6, params_fused_m=e.params_fused / 1e6,
                gmacs_train=e.macs_train / 1e9, gmacs_fused=e.macs_fused / 1e9,
                gmacs_image=e.macs_image / 1e9,
                train_ms=ms['train'], fused_ms=ms['fused'], onnx_ms=ms['onnx'],
                fused_gmacps=e.macs_fused / ms['fused'] / 1e6,
                onnx_gmacps=e.macs_fused / ms['onnx'] / 1e6,
                onnx_peak_pct=share_of_peak(e.macs_fused, onnx_r, peak_rounds),
                onnx_own_peak_pct=share_of_peak(e.macs_fused, onnx_r, peak_onnx_rounds),
                onnx_image_peak_pct=share_of_peak(e.macs_image, onnx_r, peak_rounds),
                ratio_target_needs_pct=share_of_peak(
                    e.macs_image, [RATIO_TARGET * t for t in fused_r], peak_rounds),
                onnx_over_fused=paired_median(lambda o, f: o / f, onnx_r, fused_r),
                fused_over_train=paired_median(lambda f, t: f / t, fused_r, train_r),
                peak_gmacps=statistics.median(peak_rounds), peak_torch_gmacps=peak['torch'],
                peak_onnx_gmacps=peak['onnx'], others_load=load.others))

    header = ['model', 'input', 'params M (train/fused)', 'GMAC (train/fused)', 'GMAC in image',
              f'train ms ({args.stat})', 'fused ms', 'ONNX ms', 'ONNX/fused', 'ONNX GMAC/s',
              '% of peak (of ORT sgemm)', '% of peak, image MACs',
              f'{RATIO_TARGET}x fused needs % of peak']
    table = []
    for r in rows:
        name = f'{r["group"]} {r["model"]}' if r['group'] != 'backbone' else r['model']
        params = (f'{r["params_train_m"]:.2f} / {r["params_fused_m"]:.2f}' if r['reparam']
                  else f'{r["params_fused_m"]:.2f}')
        macs = (f'{r["gmacs_train"]:.2f} / {r["gmacs_fused"]:.2f}' if r['reparam']
                else f'{r["gmacs_fused"]:.2f}')
        table.append([name, r['size'], params, macs, f'{r["gmacs_image"]:.2f}',
                      r['train_ms'] if r['reparam'] else '-',
                      r['fused_ms'], r['onnx_ms'], r['onnx_over_fused'], r['onnx_gmacps'],
                      f'{r["onnx_peak_pct"]:.0f}% ({r["onnx_own_peak_pct"]:.0f}%)',
                      f'{r["onnx_image_peak_pct"]:.0f}%', f'{r["ratio_target_needs_pct"]:.0f}%'])
    text = format_table(header, table)
    print(text)
    lines = []
    for group in groups:
        g = [r for r in rows if r['group'] == group][0]
        lines.append(f'{group}: sgemm {args.peak_size}^3 peak {g["peak_gmacps"]:.1f} GMAC/s '
                     f'(PyTorch {g["peak_torch_gmacps"]:.1f}, ONNX Runtime '
                     f'{g["peak_onnx_gmacps"]:.1f}); other processes used '
                     f'{100 * loads[group]:.0f}% of the CPU meanwhile')
    if max(loads.values(), default=0) > 0.1:
        lines.append('WARNING: other processes kept the CPU busy during the run; PyTorch with '
                     f'{args.threads} threads suffers most from that (its threads wait for '
                     'each other at every op), so these ratios are not trustworthy: rerun on '
                     'an idle machine.')
    s14 = [r for r in rows if r['group'] == 'backbone' and r['model'] in VARIANTS[1:]]
    if s14:
        worst = min(s14, key=lambda r: r['onnx_peak_pct'])
        lines.append(f'target: fused ONNX backbones S1-S4 >= {PEAK_TARGET:.0%} of peak: '
                     f'{"met" if worst["onnx_peak_pct"] >= 100 * PEAK_TARGET else "MISSED"} '
                     f'(lowest {worst["model"]} {worst["onnx_peak_pct"]:.0f}%)')
    mo = [r for r in rows if r['reparam']]
    if mo:
        worst = max(mo, key=lambda r: r['onnx_over_fused'])
        lines.append(f'target: fused ONNX Runtime <= {RATIO_TARGET}x fused PyTorch: '
                     f'{"met" if worst["onnx_over_fused"] <= RATIO_TARGET else "MISSED"} '
                     f'(highest {worst["group"]} {worst["model"]} '
                     f'{worst["onnx_over_fused"]:.2f}x)')
        missed = [r for r in mo if r['onnx_over_fused'] > RATIO_TARGET]
        if missed:
            lines.append(
                f'  at {RATIO_TARGET}x of fused PyTorch, the models that miss it would have to run '
                'the MACs that touch the image at ' + ', '.join(
                    f'{r["group"]} {r["model"]} {r["ratio_target_needs_pct"]:.0f}%'
                    for r in missed) + ' of the sgemm peak')
    print('\n'.join(lines))
    plot = draw(rows, args.plot, args.stat) if args.plot else None
    if plot:
        print(f'drew {plot}')
    return dict(benchmark='export', machine=machine_info(), rounds=args.rounds,
                ort_pool=args.ort_pool, ort_spinning=args.ort_spinning, settle=args.settle,
                rows=rows, notes=lines, table=text, raw=raw, plot=str(plot) if plot else None)


# ------------------------------------------------------------------------------------ picture
GROUP_TITLES = {'backbone': 'backbone, {s}x{s}', 'ssdlite': 'SSDLite, {s}x{s}',
                'deeplabv3': 'DeepLabV3 (OS 8), {s}x{s}'}


def draw(rows: list[dict], path: str | Path, stat: str = 'median') -> Path:
    """Latency against parameters: train-time and fused PyTorch, fused ONNX Runtime."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    groups = [g for g in GROUP_TITLES if any(r['group'] == g for r in rows)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.6), squeeze=False)
    styles = dict(train=dict(marker='o', mfc='white', color='tab:red', label='train-time, PyTorch'),
                  fused=dict(marker='o', color='tab:blue', label='fused, PyTorch'),
                  onnx=dict(marker='^', color='tab:green', label='fused, ONNX Runtime'))
    for ax, group in zip(axes[0], groups):
        g = [r for r in rows if r['group'] == group]
        mo = sorted((r for r in g if r['reparam']), key=lambda r: r['params_fused_m'])
        for kind, style in styles.items():
            xs = [r['params_train_m' if kind == 'train' else 'params_fused_m'] for r in mo]
            # Fused sizes grow with the variant; train-time ones do not (S0 has k=4 branches).
            ax.plot(xs, [r[f'{kind}_ms'] for r in mo], ls='none' if kind == 'train' else '-',
                    lw=1, ms=7, **style)
        for r in mo:
            ax.annotate('', xy=(r['params_fused_m'], r['fused_ms']),
                        xytext=(r['params_train_m'], r['train_ms']),
                        arrowprops=dict(arrowstyle='->', color='0.55', lw=0.8))
            ax.annotate(r['model'].upper(), (r['params_fused_m'], r['onnx_ms']),
                        textcoords='offset points', xytext=(0, -14), ha='center', fontsize=8)
        for r in g:
            if not r['reparam']:
                ax.plot(r['params_fused_m'], r['fused_ms'], 's', color='tab:purple', ms=7,
                        label=f'{r["model"]}, PyTorch')
                ax.plot(r['params_fused_m'], r['onnx_ms'], 's', mfc='white', ms=7,
                        color='tab:purple', label=f'{r["model"]}, ONNX Runtime')
        ax.set_yscale('log')
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f'{y:g}'))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(GROUP_TITLES[group].format(s=g[0]['size']))
        ax.set_xlabel('parameters (M)')
        ax.set_ylabel(f'latency, batch 1 (ms, {stat}, log scale)')
        ax.grid(alpha=0.3)
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc='lower right')
    fig.suptitle(f'MobileOne: train-time vs fused, PyTorch vs ONNX Runtime '
                 f'({torch.get_num_threads()} CPU threads)', fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

