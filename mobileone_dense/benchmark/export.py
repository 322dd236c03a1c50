"""``tools/benchmark.py export``: train-time vs fused PyTorch vs fused ONNX Runtime, with MACs
and the share of the machine's matrix-multiply peak.

For the S0-S4 backbones, the SSDLite detectors and the DeepLabV3 segmentors (each group with its
MobileNetV2 peer: mmdet's backbone, mmdet's SSDLite, mmseg's DeepLabV3-D8), batch 1: the
train-time model and the fused model in PyTorch, and the fused model exported to ONNX (as
``tools/export.py`` writes it) in ONNX Runtime. Detectors and segmentors run from the raw image
to their final predictions (boxes, scores, labels after NMS; logits and class map), through the
graphs of :mod:`mobileone_dense.export` (:mod:`.candidates`).

Every group of models is timed in one interleaved run (:func:`time_side_by_side`) together with
a large sgemm in PyTorch and in ONNX Runtime, so "% of peak" compares rates measured under the
same load. All ONNX Runtime sessions share one thread pool, as in a process serving several
models: with a pool each, the workers of the session that ran last spin against the one being
timed (fused S1 read 9.6 ms interleaved with two other sessions that way, 5.4 ms on a shared
pool, 5.1 ms alone). Each model gets three settling calls before its timed call (5.3 ms for S1
in the same interleaving, against 5.4 ms with one); the sgemm gets one. Ratios and shares of the
peak are medians of per-round ratios.

MACs are counted by ptflops (:mod:`.macs`), which also counts those that touch the image.
Weights are random (latency does not depend on them): nothing is downloaded. The run also draws
the latencies (:mod:`.plot`), by default into ``work_dirs/benchmark/export.png``.
"""
from __future__ import annotations

import argparse
import statistics
from typing import Callable

import torch

from .. import apis
from ..errors import UsageError
from ..runtimes.onnxruntime import ort_use_shared_pool
from ..utils.timing import time_side_by_side
from .candidates import PEAK_NAMES, Group, backbone_group, dense_group, peak_fns
from .common import WORK_DIR, add_timing_arguments, format_table, machine_info
from .load import CPULoad, load_warning
from .plot import draw

VARIANTS = apis.PAPER_VARIANTS


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
    add_timing_arguments(
        parser, rounds=30, seg_rounds=5, warmup=3, threads=2, ort_pool='shared', settle=3,
        stat='median', work_dir=str(WORK_DIR / 'export'), plot=str(WORK_DIR / 'export.png'),
        helps=dict(
            seg_rounds='timed runs per segmentor (they are slow)',
            threads='PyTorch threads and ONNX Runtime intra-op threads',
            ort_pool='shared: all ONNX Runtime sessions run on one thread pool, as in a process '
                     'that serves several models, so that the idle workers of one session do '
                     'not spin against the next one timed; per-session: a pool each, spinning '
                     'as --ort-spinning says',
            settle='untimed calls of a model right before each timed one, so that it is timed '
                   'warm, in its steady state. At most 1 for the sgemm and the DeepLabV3 '
                   'group: their calls are long enough to settle in one, and more only keeps '
                   'the cores under sustained load, which lowers their clock (the sgemm loses '
                   'about 4%% back to back)',
            stat='statistic of the rounds for the latencies in the table and the picture (min '
                 'resists a busy machine; the JSON has both). Ratios and shares of the peak '
                 'are always medians of per-round ratios',
            work_dir='where the ONNX files go (default: %(default)s)'))
    parser.add_argument('--ort-spinning', choices=['on', 'off'], default='on',
                        help='with --ort-pool per-session: worker threads spin between ops '
                             "(ONNX Runtime's default; the shared pool always spins)")
    parser.add_argument('--peak-size', type=int, default=2048, help='side of the sgemm')


# ------------------------------------------------------------------------------ per-round figures
def round_peaks(macs: int, torch_ms: list[float], onnx_ms: list[float]) -> list[float]:
    """The peak of each round in GMAC/s: ``macs`` in the faster of the two sgemm runs."""
    return [macs / min(a, b) / 1e6 for a, b in zip(torch_ms, onnx_ms)]


def paired_median(fn: Callable[..., float], *series: list[float]) -> float:
    """Median over rounds of ``fn`` applied to the candidates' times in the same round."""
    return statistics.median(fn(*values) for values in zip(*series))


def share_of_peak(macs: int, times_ms: list[float], peaks: list[float]) -> float:
    """Median over rounds of the rate (GMAC/s) of ``macs`` in ``times_ms``, in % of that
    round's peak."""
    return 100 * paired_median(lambda t, p: macs / t / 1e6 / p, times_ms, peaks)


# ------------------------------------------------------------------------------ the run's pieces
def build_groups(args: argparse.Namespace, ort_options: dict) -> list[Group]:
    groups = []
    if args.variants:
        groups.append(backbone_group(args.variants, args.backbone_size, args.rounds,
                                     args.work_dir, ort_options))
    if args.det_variants:
        groups.append(dense_group('ssdlite', args.det_variants, args.det_size, args.rounds,
                                  args.work_dir, ort_options))
    if args.seg_variants:
        groups.append(dense_group('deeplabv3', args.seg_variants, args.seg_size,
                                  args.seg_rounds, args.work_dir, ort_options))
    return groups


def time_group(args: argparse.Namespace, group: Group, peak: dict) -> tuple[dict, float]:
    """One interleaved run of the group's candidates and the sgemm; returns the timings and the
    share of the CPU that other processes used meanwhile."""
    fns = dict(peak)
    for e in group.entries:
        fns.update(e.fns)
    print(f'{group.name} at {group.size}x{group.size}: {len(fns)} candidates, {group.rounds} '
          f'interleaved rounds, batch 1, {args.threads} threads')
    settle = {name: min(args.settle, 1) if group.long_calls or name in PEAK_NAMES
              else args.settle for name in fns}
    with CPULoad() as load:
        result = time_side_by_side(fns, rounds=group.rounds, settle=settle,
                                   warmup=min(args.warmup, 1) if group.long_calls else args.warmup)
    return result, load.others


def group_rows(args: argparse.Namespace, group: Group, result: dict, load: float) -> list[dict]:
    """One row per model: its sizes, latencies and rates. Ratios pair the candidates round by
    round (a round takes a second or two), then take the median: the machine's speed drifts by
    several percent over minutes."""
    stat, n3 = f'{args.stat}_ms', args.peak_size ** 3
    peak = {k: n3 / result[f'sgemm {k}'][stat] / 1e6 for k in ('torch', 'onnx')}
    per_round = {name: r['rounds_ms'] for name, r in result.items()}
    peaks = round_peaks(n3, per_round['sgemm torch'], per_round['sgemm onnx'])
    onnx_peaks = [n3 / t / 1e6 for t in per_round['sgemm onnx']]
    rows = []
    for e in group.entries:
        ms = {k: result[f'{e.name} {k}'][stat] for k in ('train', 'fused', 'onnx')
              if f'{e.name} {k}' in result}
        ms.setdefault('train', ms['fused'])
        onnx_r, fused_r = per_round[f'{e.name} onnx'], per_round[f'{e.name} fused']
        train_r = per_round.get(f'{e.name} train', fused_r)
        rows.append(dict(
            group=group.name, model=e.name, size=group.size, reparam=e.reparam,
            params_train_m=e.params_train / 1e6, params_fused_m=e.params_fused / 1e6,
            gmacs_train=e.macs_train / 1e9, gmacs_fused=e.macs_fused / 1e9,
            gmacs_image=e.macs_image / 1e9,
            train_ms=ms['train'], fused_ms=ms['fused'], onnx_ms=ms['onnx'],
            fused_gmacps=e.macs_fused / ms['fused'] / 1e6,
            onnx_gmacps=e.macs_fused / ms['onnx'] / 1e6,
            onnx_peak_pct=share_of_peak(e.macs_fused, onnx_r, peaks),
            onnx_own_peak_pct=share_of_peak(e.macs_fused, onnx_r, onnx_peaks),
            onnx_image_peak_pct=share_of_peak(e.macs_image, onnx_r, peaks),
            fused_image_peak_pct=share_of_peak(e.macs_image, fused_r, peaks),
            onnx_over_fused=paired_median(lambda o, f: o / f, onnx_r, fused_r),
            fused_over_train=paired_median(lambda f, t: f / t, fused_r, train_r),
            peak_gmacps=statistics.median(peaks), peak_torch_gmacps=peak['torch'],
            peak_onnx_gmacps=peak['onnx'], others_load=load))
    return rows


def _pair(r: dict, train_key: str, fused_key: str) -> str:
    """``train / fused`` of a MobileOne model, one figure for a peer (nothing to fuse)."""
    return (f'{r[train_key]:.2f} / {r[fused_key]:.2f}' if r['reparam']
            else f'{r[fused_key]:.2f}')


def table(rows: list[dict], stat: str) -> str:
    header = ['model', 'input', 'params M (train/fused)', 'GMAC (train/fused)', 'GMAC in image',
              f'train ms ({stat})', 'fused ms', 'ONNX ms', 'ONNX/fused', 'ONNX GMAC/s',
              '% of peak (of ORT sgemm)', '% of peak, image MACs',
              'fused PyTorch % of peak, image MACs']
    lines = []
    for r in rows:
        name = f'{r["group"]} {r["model"]}' if r['group'] != 'backbone' else r['model']
        lines.append([name, r['size'], _pair(r, 'params_train_m', 'params_fused_m'),
                      _pair(r, 'gmacs_train', 'gmacs_fused'), f'{r["gmacs_image"]:.2f}',
                      r['train_ms'] if r['reparam'] else '-', r['fused_ms'], r['onnx_ms'],
                      r['onnx_over_fused'], r['onnx_gmacps'],
                      f'{r["onnx_peak_pct"]:.0f}% ({r["onnx_own_peak_pct"]:.0f}%)',
                      f'{r["onnx_image_peak_pct"]:.0f}%', f'{r["fused_image_peak_pct"]:.0f}%'])
    return format_table(header, lines)


def notes(args: argparse.Namespace, rows: list[dict], loads: dict[str, float]) -> list[str]:
    """Each group's sgemm peak and the load from other processes, with a warning when that
    load makes the ratios untrustworthy."""
    lines = []
    for group, load in loads.items():
        g = next(r for r in rows if r['group'] == group)
        lines.append(f'{group}: sgemm {args.peak_size}^3 peak {g["peak_gmacps"]:.1f} GMAC/s '
                     f'(PyTorch {g["peak_torch_gmacps"]:.1f}, ONNX Runtime '
                     f'{g["peak_onnx_gmacps"]:.1f}); other processes used '
                     f'{100 * load:.0f}% of the CPU meanwhile')
    return lines + load_warning(loads, args.threads)


def run(args: argparse.Namespace) -> dict:
    if not (args.variants or args.det_variants or args.seg_variants):
        raise UsageError('Nothing to time: give --variants, --det-variants or --seg-variants '
                         'a variant.')
    torch.set_num_threads(args.threads)
    ort_options = dict(threads=args.threads, spinning=args.ort_spinning == 'on',
                       shared_pool=args.ort_pool == 'shared')
    if ort_options['shared_pool']:
        ort_use_shared_pool(args.threads)
    print('building, counting MACs and exporting to ONNX ...')
    groups = build_groups(args, ort_options)
    peak = peak_fns(args.peak_size, args.work_dir, ort_options)
    rows, raw, loads = [], {}, {}
    for group in groups:
        raw[group.name], loads[group.name] = time_group(args, group, peak)
        rows += group_rows(args, group, raw[group.name], loads[group.name])
    text = table(rows, args.stat)
    lines = notes(args, rows, loads)
    print(text, *lines, sep='\n')
    plot = draw(rows, args.plot, args.stat, args.threads) if args.plot else None
    if plot:
        print(f'drew {plot}')
    return dict(benchmark='export', machine=machine_info(), rounds=args.rounds,
                ort_pool=args.ort_pool, ort_spinning=args.ort_spinning, settle=args.settle,
                rows=rows, notes=lines, table=text, raw=raw, plot=str(plot) if plot else None)
