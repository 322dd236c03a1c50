"""``tools/benchmark.py latency``: MobileOne and its MobileNetV2 peer, train-time and deployed,
in PyTorch, ONNX Runtime and LiteRT (FP32 and INT8), side by side.

Three groups: bare backbones at 224x224, SSDLite detectors at 320x320, DeepLabV3 segmentors at
512x512, each with the MobileNetV2 peer, all built by :func:`.models.build` and deployed alike:
MobileOne reparameterized and every remaining conv + BN folded, for MobileOne and the peers.
Runtimes (``--runtimes``): the train-time model in PyTorch, the deployed model in PyTorch, and
the deployed model converted by the export's own writers to ONNX (ONNX Runtime FP32) and LiteRT
(XNNPACK) FP32 and INT8 (calibrated on ``--calib`` synthetic images: calibration sets the
scales, not the work). Every runtime runs on ``--threads`` threads, batch 1; PyTorch runs each
model in the faster of its two memory layouts (NCHW, channels-last; a short trial decides, and
the JSON says which); all ONNX Runtime sessions share one thread pool, as in a process serving
several models. Detectors are also timed end to end: the network, then mmdet's selection and
class-wise NMS in PyTorch; every end-to-end candidate post-processes one shared set of outputs
(the peer's) at score threshold 0, so that NMS, whose cost depends on scores that random
weights make arbitrary, costs every model the same.

Each group is one interleaved run (:mod:`.timing`): in every round each candidate runs untimed
calls for :data:`SETTLE_MS` (ONNX Runtime's pool keeps spinning after a run and would slow the
next candidate), then :data:`CALLS` timed calls (for DeepLabV3, whose calls are long, one call
and half the rounds), whose median is its time in the round. Ratios are medians of per-round
ratios. Before timing, each runtime's outputs are compared with deployed PyTorch's (FP32:
within float tolerance; INT8: correlation) and the train-time model's with the deployed one's.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Callable

import torch

from .. import apis
from ..errors import UsageError
from ..export.numerics import RTOL_CAP, compare, correlation, flatten
from ..runtimes.litert import LiteRTModel
from ..runtimes.onnxruntime import ort_session, ort_use_shared_pool
from ..utils.capture import captured_output
from .common import WORK_DIR, CPULoad, format_table, load_notes, machine_info, paired_median
from .convert import convert
from .models import PEER, SIZES, Model, build
from .plot import draw_latency
from .timing import settle_by_time, time_side_by_side

RUNTIMES = ('train', 'pytorch', 'onnx', 'litert', 'litert_int8')
LABELS = {'train': 'train-time PyTorch', 'pytorch': 'deployed PyTorch',
          'onnx': 'ONNX Runtime FP32', 'litert': 'LiteRT FP32', 'litert_int8': 'LiteRT INT8'}
SETTLE_MS = 200
CALLS = 5
#: Groups whose calls are long enough to settle in one call and to time one call a round.
LONG_CALLS = ('deeplabv3', )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--groups', nargs='+', default=list(SIZES), choices=list(SIZES),
                        help='backbones at 224, SSDLite at 320, DeepLabV3 at 512 (default: all)')
    parser.add_argument('--variants', nargs='+', default=list(apis.PAPER_VARIANTS),
                        choices=apis.VARIANTS, help='MobileOne variants of the backbone and '
                        'SSDLite groups (default: %(default)s)')
    parser.add_argument('--seg-variants', nargs='+', default=['s0'],
                        choices=apis.PAPER_VARIANTS, help='DeepLabV3 variants (default: s0)')
    parser.add_argument('--runtimes', nargs='+', default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument('--no-peers', dest='peers', action='store_false',
                        help='leave out the MobileNetV2 peers')
    parser.add_argument('--rounds', type=int, default=20,
                        help='interleaved rounds per group (half for DeepLabV3, whose calls '
                             'are long)')
    parser.add_argument('--threads', type=int, default=2, help='threads of every runtime')
    parser.add_argument('--calib', type=int, default=8, help='INT8 calibration images')
    parser.add_argument('--reconvert', action='store_true',
                        help='convert anew instead of reusing the cached files')
    parser.add_argument('--work-dir', default=str(WORK_DIR / 'latency'),
                        help='where converted files are cached (default: %(default)s)')
    parser.add_argument('--plot', default=str(WORK_DIR / 'latency.png'),
                        help="the picture (default: %(default)s; '' for none)")


# ------------------------------------------------------------------------------ runners
def pytorch_runner(network: torch.nn.Module, image: torch.Tensor) -> tuple[Callable, str]:
    """A call of ``network`` on ``image`` in its faster memory layout, and the layout's name:
    oneDNN's convolutions may prefer channels-last, depending on the network."""
    trial = {}
    for layout, fmt in (('NCHW', torch.contiguous_format), ('channels-last', torch.channels_last)):
        net = copy.deepcopy(network).to(memory_format=fmt)
        x = image.contiguous(memory_format=fmt)
        with torch.inference_mode():
            net(x)
            best = float('inf')
            for _ in range(3):
                start = time.perf_counter()
                net(x)
                best = min(best, time.perf_counter() - start)
        trial[layout] = best, (lambda net=net, x=x: flatten(net(x)))
    layout = min(trial, key=lambda k: trial[k][0])
    return trial[layout][1], layout


def runners(model: Model, runtimes, paths: dict[str, Path], threads: int
            ) -> tuple[dict[str, Callable[[], list]], dict[str, str]]:
    """Per runtime, a call of ``model``'s network on its image (outputs as a list), and the
    PyTorch layouts chosen."""
    fns, layouts = {}, {}
    for runtime in runtimes:
        if runtime in ('train', 'pytorch'):
            net = model.train if runtime == 'train' else model.network
            fns[runtime], layouts[runtime] = pytorch_runner(net, model.image)
        elif runtime == 'onnx':
            session = ort_session(paths['onnx'], threads=threads, shared_pool=True)
            array = model.image.numpy()
            fns[runtime] = lambda s=session, a=array: s.run(None, {'image': a})
        else:
            lite = LiteRTModel(paths[runtime], threads)
            nhwc = model.image.permute(0, 2, 3, 1).contiguous().numpy()

            def run(lite=lite, nhwc=nhwc):
                out = lite.runner(**{lite.input_name: nhwc})
                return [out[name] for name in lite.output_names]
            with captured_output():  # XNNPACK's line about its delegate, at the first call
                run()
            fns[runtime] = run
    return fns, layouts


def agreement(fns: dict[str, Callable[[], list]]) -> dict[str, dict]:
    """Each runtime's float outputs against deployed PyTorch's: relative differences (INT8:
    correlation). A class map is left out: it differs wherever two classes tie."""
    with torch.inference_mode():
        expected = fns['pytorch']()
        floats = [i for i, e in enumerate(expected) if e.is_floating_point()]
        report = {}
        for runtime, fn in fns.items():
            if runtime == 'pytorch':
                continue
            outputs = fn()
            actual, wanted = [outputs[i] for i in floats], [expected[i] for i in floats]
            if runtime == 'litert_int8':
                report[runtime] = dict(correlation=correlation(actual, wanted))
            else:
                a = compare(actual, wanted, RTOL_CAP)
                report[runtime] = dict(max_rel=a.max_rel, ok=a.ok)
    return report


# ------------------------------------------------------------------------------ one group
def time_group(args: argparse.Namespace, group: str, models: list[Model]) -> dict:
    """Convert (or reuse), check and time one group; returns its rows and raw figures."""
    print(f'{group}: converting into {args.work_dir}', flush=True)
    fns, layouts, checks = {}, {}, {}
    for m in models:
        paths = convert(m, args.runtimes, Path(args.work_dir), args.calib, args.reconvert)
        fns[m.name], layouts[m.name] = runners(m, args.runtimes, paths, args.threads)
        if 'pytorch' in fns[m.name]:
            checks[m.name] = agreement(fns[m.name])
    timed = {f'{m.name} {r}': fn for m in models for r, fn in fns[m.name].items()}
    post = [m for m in models if m.postprocess is not None]
    if post:  # end to end: the network, then one shared set of outputs post-processed
        with torch.inference_mode():
            source = next((m for m in post if m.peer), post[0])
            shared = fns[source.name]['pytorch']() if 'pytorch' in fns[source.name] else \
                flatten(source.network(source.image))
        for m in post:
            for r in args.runtimes:
                if r != 'train':
                    timed[f'{m.name} {r} e2e'] = (
                        lambda run=fns[m.name][r], p=m.postprocess: (run(), p(shared)))
    long = group in LONG_CALLS
    rounds = max(3, args.rounds // 2) if long else args.rounds
    print(f'{group} at {models[0].size}x{models[0].size}: {len(timed)} candidates, '
          f'{rounds} interleaved rounds, batch 1, {args.threads} threads', flush=True)
    settle = settle_by_time(timed, SETTLE_MS, 1 if long else 3)
    with CPULoad() as load:
        result = time_side_by_side(timed, rounds=rounds, warmup=1 if long else 3,
                                   settle=settle, calls=1 if long else CALLS)
    return dict(rows=rows(group, models, args.runtimes, result), layouts=layouts,
                agreement=checks, load=load.others, raw=result)


def rows(group: str, models: list[Model], runtimes, result: dict) -> list[dict]:
    """One row per model and part (``network``; ``end to end`` for detectors): median ms per
    runtime and the ratios, each the median of its per-round ratios."""
    peer = next((m for m in models if m.peer), None)
    out = []
    for m in models:
        parts = [('network', '')] + ([('end to end', ' e2e')] if m.postprocess else [])
        for part, suffix in parts:
            names = {r: f'{m.name} {r}{suffix}' for r in runtimes
                     if f'{m.name} {r}{suffix}' in result}
            rounds = {r: result[n]['rounds_ms'] for r, n in names.items()}
            row = dict(group=group, model=m.name, size=m.size, part=part, peer=m.peer,
                       params_m=m.params / 1e6,
                       ms={r: result[n]['median_ms'] for r, n in names.items()},
                       min_ms={r: result[n]['min_ms'] for r, n in names.items()})
            if {'train', 'pytorch'} <= set(rounds):
                row['fused_speedup'] = paired_median(lambda t, f: t / f, rounds['train'],
                                                     rounds['pytorch'])
            if {'litert', 'litert_int8'} <= set(rounds):
                row['int8_speedup'] = paired_median(lambda f, q: f / q, rounds['litert'],
                                                    rounds['litert_int8'])
            if peer is not None and not m.peer:
                row['over_peer'] = {
                    r: paired_median(lambda a, b: a / b, t,
                                     result[f'{peer.name} {r}{suffix}']['rounds_ms'])
                    for r, t in rounds.items() if f'{peer.name} {r}{suffix}' in result}
            out.append(row)
    return out


def table(rows: list[dict], runtimes) -> str:
    dash = lambda v: '-' if v is None else v  # noqa: E731
    header = (['model', 'input', 'part'] + [f'{LABELS[r]} ms' for r in runtimes]
              + ['train-time / deployed', 'INT8 speedup', f'deployed / {PEER}',
                 f'INT8 / {PEER} INT8'])
    lines = []
    for r in rows:
        name = r['model'] if r['group'] == 'backbone' else f'{r["group"]} {r["model"]}'
        over = r.get('over_peer', {})
        lines.append([name, r['size'], r['part'], *(dash(r['ms'].get(k)) for k in runtimes),
                      dash(r.get('fused_speedup')), dash(r.get('int8_speedup')),
                      dash(over.get('pytorch')), dash(over.get('litert_int8'))])
    return format_table(header, lines)


def notes(groups: dict[str, dict], machine: dict) -> list[str]:
    """The layouts PyTorch ran in, agreement failures, the load of other processes, and a CPU
    without int8 dot products (XNNPACK's INT8 kernels then gain little over FP32)."""
    lines = []
    if not machine.get('int8_dot'):
        lines.append(f'note: this CPU ({machine.get("cpu_name")}) has no int8 dot-product '
                     f'instructions (VNNI or AMX on x86, dotprod on Arm): its INT8 speedups are '
                     f'not those of a CPU that has them')
    for group, g in groups.items():
        chosen = []
        for name, by in g['layouts'].items():
            runtimes = [LABELS[r].split()[0] for r, layout in by.items() if layout != 'NCHW']
            if runtimes:
                chosen.append(f'{name} ({", ".join(runtimes)})')
        lines.append(f'{group}: PyTorch ran channels-last for {"; ".join(chosen) or "none"}, '
                     f'NCHW for the rest (the faster of the two in a short trial)')
        for name, report in g['agreement'].items():
            for runtime, a in report.items():
                if a.get('ok') is False:
                    lines.append(f'WARNING: {LABELS[runtime]} of {group} {name} differs from '
                                 f'deployed PyTorch (max rel diff {a["max_rel"]:.1e}); rerun '
                                 f'with --reconvert')
    return lines + load_notes({g: v['load'] for g, v in groups.items()})


def run(args: argparse.Namespace) -> dict:
    if args.rounds < 1 or args.threads < 1 or args.calib < 1:
        raise UsageError('--rounds, --threads and --calib must be at least 1.')
    torch.set_num_threads(args.threads)
    if 'onnx' in args.runtimes:
        ort_use_shared_pool(args.threads)
    groups = {}
    for group in args.groups:
        names = args.seg_variants if group == 'deeplabv3' else args.variants
        print(f'{group}: building {", ".join(names)}{" and " + PEER if args.peers else ""}',
              flush=True)
        models = [build(group, n) for n in [*names, *([PEER] if args.peers else [])]]
        groups[group] = time_group(args, group, models)
    all_rows = [r for g in groups.values() for r in g['rows']]
    text = table(all_rows, args.runtimes)
    machine = machine_info()
    lines = notes(groups, machine)
    print(text, *lines, sep='\n')
    plot = draw_latency(all_rows, args.runtimes, LABELS, args.plot, args.threads) \
        if args.plot else None
    if plot:
        print(f'drew {plot}')
    return dict(benchmark='latency', machine=machine, threads=args.threads,
                rounds=args.rounds, calib=args.calib, settle_ms=SETTLE_MS, calls=CALLS,
                runtimes=args.runtimes, rows=all_rows, table=text, notes=lines,
                groups={g: {k: v for k, v in d.items() if k != 'rows'}
                        for g, d in groups.items()},
                plot=str(plot) if plot else None)
