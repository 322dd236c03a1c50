"""``tools/benchmark.py latency``: MobileOne and its MobileNetV2 peer, train-time and deployed,
in PyTorch, ONNX Runtime, LiteRT and MediaPipe Tasks, side by side.

Three groups: bare backbones at 224x224, SSDLite detectors at 320x320, DeepLabV3 segmentors at
512x512, each with the MobileNetV2 peer, all built by :func:`.models.build` and deployed alike.
Runtimes (``--runtimes``): the train-time and the deployed model in PyTorch, in the faster of
its two memory layouts (a short trial decides; the JSON says which); the deployed model
converted by the export's own writers to ONNX (ONNX Runtime FP32, every session in one thread
pool, as in a process serving several models) and LiteRT (XNNPACK) FP32 and INT8 (calibrated on
``--calib`` synthetic images: calibration sets the scales, not the work); all on ``--threads``
threads, batch 1. Detectors are also timed end to end: the network, then mmdet's selection and
class-wise NMS in PyTorch, every candidate post-processing one shared set of outputs (the
peer's) at score threshold 0, so that NMS, whose cost depends on scores that random weights
make arbitrary, costs every model the same. MediaPipe (``mediapipe*``, SSDLite only, end to end)
is what an app pays: ``ObjectDetector.detect`` on the model's image as uint8 RGB, through
MediaPipe's preprocessing, the LiteRT file ``tools/export.py`` would write, its decoding and NMS
at the config's score threshold, on threads of MediaPipe's choosing.

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
import operator
import timeit
from pathlib import Path
from typing import Callable

import torch

from .. import apis
from ..deploy.mediapipe_client import MediaPipeModel
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

RUNTIMES = ('train', 'pytorch', 'onnx', 'litert', 'litert_int8', 'mediapipe', 'mediapipe_int8')
LABELS = {'train': 'train-time PyTorch', 'pytorch': 'deployed PyTorch',
          'onnx': 'ONNX Runtime FP32', 'litert': 'LiteRT FP32', 'litert_int8': 'LiteRT INT8',
          'mediapipe': 'MediaPipe FP32', 'mediapipe_int8': 'MediaPipe INT8'}
#: MediaPipe Tasks' ObjectDetector on the app files: SSDLite only, end to end only.
APP = ('mediapipe', 'mediapipe_int8')
SETTLE_MS = 200
CALLS = 5
#: Groups whose calls are long enough to settle in one call and to time one call a round.
LONG_CALLS = ('deeplabv3', )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--groups', nargs='+', default=list(SIZES), choices=list(SIZES),
                        help='backbones at 224, SSDLite at 320, DeepLabV3 at 512 (default: all)')
    parser.add_argument('--variants', nargs='+', default=list(apis.PAPER_VARIANTS),
                        choices=apis.VARIANTS, help='backbone, SSDLite variants (default: s0-s4)')
    parser.add_argument('--seg-variants', nargs='+', default=['s0'],
                        choices=apis.PAPER_VARIANTS, help='DeepLabV3 variants (default: s0)')
    parser.add_argument('--runtimes', nargs='+', default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument('--no-peers', dest='peers', action='store_false',
                        help='leave out the MobileNetV2 peers')
    parser.add_argument('--rounds', type=int, default=20,
                        help='interleaved rounds per group (half for DeepLabV3)')
    parser.add_argument('--threads', type=int, default=2, help='threads (MediaPipe: its own)')
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
            best = min(timeit.repeat(lambda net=net, x=x: net(x), repeat=3, number=1))
        trial[layout] = best, (lambda net=net, x=x: flatten(net(x)))
    layout = min(trial, key=lambda k: trial[k][0])
    return trial[layout][1], layout


def runners(model: Model, runtimes, paths: dict[str, Path], threads: int, clients: list
            ) -> tuple[dict[str, Callable[[], list]], dict[str, str]]:
    """Per runtime, a call of ``model``'s network on its image (outputs as a list; MediaPipe:
    its detections), and the PyTorch layouts chosen. MediaPipe's clients go to ``clients``,
    to be closed."""
    fns, layouts = {}, {}
    for runtime in runtimes:
        if runtime in ('train', 'pytorch'):
            net = model.train if runtime == 'train' else model.network
            fns[runtime], layouts[runtime] = pytorch_runner(net, model.image)
            continue
        with captured_output():  # XNNPACK's line about its delegate, at loading or first call
            if runtime == 'onnx':
                session = ort_session(paths['onnx'], threads=threads, shared_pool=True)
                array = model.image.numpy()
                fns[runtime] = lambda s=session, a=array: s.run(None, {'image': a})
            elif runtime in APP:  # the picture as an app hands it over: uint8 RGB, HxWx3
                clients.append(MediaPipeModel(model.cfg, paths[runtime]))
                picture = clients[-1].picture(model.image[0])
                fns[runtime] = lambda c=clients[-1].client, p=picture: c.detect(p).detections
            else:
                lite = LiteRTModel(paths[runtime], threads)
                nhwc = model.image.permute(0, 2, 3, 1).contiguous().numpy()

                def run(lite=lite, nhwc=nhwc):
                    out = lite.runner(**{lite.input_name: nhwc})
                    return [out[name] for name in lite.output_names]
                fns[runtime] = run
            fns[runtime]()
    return fns, layouts


def agreement(fns: dict[str, Callable[[], list]]) -> dict[str, dict]:
    """Each runtime's float outputs against deployed PyTorch's: relative differences (INT8:
    correlation). A class map is left out: it differs wherever two classes tie."""
    with torch.inference_mode():
        expected = fns['pytorch']()
        floats = [i for i, e in enumerate(expected) if e.is_floating_point()]
        report = {}
        for runtime, fn in fns.items():
            if runtime in ('pytorch', *APP):
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
    fns, layouts, checks, clients = {}, {}, {}, []
    runtimes = [r for r in args.runtimes if r not in APP or group == 'ssdlite']
    for m in models:
        paths = convert(m, runtimes, Path(args.work_dir), args.calib, args.reconvert)
        fns[m.name], layouts[m.name] = runners(m, runtimes, paths, args.threads, clients)
        if 'pytorch' in fns[m.name]:
            checks[m.name] = agreement(fns[m.name])
    timed = {f'{m.name} {r}{" e2e" * (r in APP)}': fn for m in models
             for r, fn in fns[m.name].items()}
    found = {f'{m.name} {LABELS[r]}': len(fn()) for m in models
             for r, fn in fns[m.name].items() if r in APP}
    post = [m for m in models if m.postprocess is not None]
    if post:  # end to end: the network, then one shared set of outputs post-processed
        with torch.inference_mode():
            source = next((m for m in post if m.peer), post[0])
            shared = fns[source.name]['pytorch']() if 'pytorch' in fns[source.name] else \
                flatten(source.network(source.image))
        for m in post:
            for r, run in fns[m.name].items():
                if r not in ('train', *APP):
                    timed[f'{m.name} {r} e2e'] = lambda run=run, p=m.postprocess: (run(),
                                                                                   p(shared))
    long = group in LONG_CALLS
    rounds = max(3, args.rounds // 2) if long else args.rounds
    print(f'{group} at {models[0].size}x{models[0].size}: {len(timed)} candidates, '
          f'{rounds} interleaved rounds, batch 1, {args.threads} threads', flush=True)
    settle = settle_by_time(timed, SETTLE_MS, 1 if long else 3)
    with CPULoad() as load:
        result = time_side_by_side(timed, rounds=rounds, warmup=1 if long else 3,
                                   settle=settle, calls=1 if long else CALLS)
    for client in clients:
        client.close()
    return dict(rows=rows(group, models, args.runtimes, result), layouts=layouts,
                agreement=checks, load=load.others, raw=result,
                **({'mediapipe': found} if set(APP) & set(args.runtimes) else {}))


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
            for key, a, b in (('fused_speedup', 'train', 'pytorch'),
                              ('int8_speedup', 'litert', 'litert_int8')):
                if {a, b} <= set(rounds):
                    row[key] = paired_median(operator.truediv, rounds[a], rounds[b])
            if peer is not None and not m.peer:
                row['over_peer'] = {
                    r: paired_median(operator.truediv, t,
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
    """The layouts PyTorch ran in, agreement failures, what MediaPipe timed, the load of other
    processes, and a CPU without int8 dot products (XNNPACK's INT8 kernels then gain little
    over FP32)."""
    lines = []
    if not machine.get('int8_dot'):
        lines.append(f'note: this CPU ({machine.get("cpu_name")}) has no int8 dot-product '
                     f'instructions (VNNI or AMX on x86, dotprod on Arm): its INT8 speedups are '
                     f'not those of a CPU that has them')
    for group, g in groups.items():
        chosen = [f'{name} ({", ".join(LABELS[r].split()[0] for r in by if by[r] != "NCHW")})'
                  for name, by in g['layouts'].items() if set(by.values()) != {'NCHW'}]
        lines.append(f'{group}: PyTorch ran channels-last for {"; ".join(chosen) or "none"}, '
                     f'NCHW for the rest (the faster of the two in a short trial)')
        for name, report in g['agreement'].items():
            for runtime, a in report.items():
                if a.get('ok') is False:
                    lines.append(f'WARNING: {LABELS[runtime]} of {group} {name} differs from '
                                 f'deployed PyTorch (max rel diff {a["max_rel"]:.1e}); rerun '
                                 f'with --reconvert')
        found = ', '.join(f'{k} {n}' for k, n in g.get('mediapipe', {}).items())
        if 'mediapipe' in g:
            lines.append(f'{group}: MediaPipe ran end to end (uint8 RGB image in; its '
                         f'preprocessing, the network, its decoding and NMS at the config\'s '
                         f'score threshold; detections out) on threads of its own choosing, not '
                         f'--threads; detections on the image: {found}' if found else
                         f'{group}: no MediaPipe figures (SSDLite only)')
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
