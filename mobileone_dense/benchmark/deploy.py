"""``tools/benchmark.py deploy``: fused PyTorch, ONNX Runtime FP32, LiteRT FP32 and LiteRT INT8
side by side, for the MobileOne backbones, SSDLite detectors and DeepLabV3 segmentors and their
MobileNetV2 peers.

Every model is the network a deployment runs (:mod:`mobileone_dense.export`): the fused model
(MobileOne blocks reparameterized, every other conv + BN folded), raw ``1x3xHxW`` 0..255 image
in. A detector's network ends at decoded boxes and class scores
(:class:`~mobileone_dense.export.graph.DetectorNetwork`), a segmentor's at logits resized to the
input and the class map; a bare backbone (S0-S4, mmdet's MobileNetV2) gets the configs' ImageNet
normalisation in front of it, in the graph as the detectors have it (INT8 then quantizes the
image after it, and the model takes a float image like every other), and ends at its stride-32
map. Weights are random, with every BN's statistics measured on four synthetic images before
fusion, so that activations keep a trained network's scale (with a fresh BN's, they grow by
orders of magnitude over the blocks, and XNNPACK refuses the INT8 graph). The same module runs
in PyTorch, is exported to ONNX (ONNX Runtime, FP32) and converted to
LiteRT (XNNPACK) in FP32 and in INT8 (:func:`~mobileone_dense.export.litert.write_tflite`:
per-channel weights, calibrated on ``--calib`` synthetic images of
:func:`~mobileone_dense.export.numerics.make_image`; the calibration changes the scales, not the
work, so synthetic images suffice for speed, not for accuracy). A backbone's INT8 output is
int8 (nothing float follows the last convolution), which saves one dequantization of its
output map.

Detectors are timed twice: the network alone, and end to end, i.e. the network then the
detector's post-processing in PyTorch (``task.postprocessor``: per-level top-k, score threshold,
class-wise NMS), in every runtime alike (the ONNX file holds the network only, so that all four
run the same graph). NMS costs what the scores and boxes make it cost, which for random weights
differ arbitrarily between models and between FP32 and INT8; so, by default, every runtime runs
its own network and then post-processes one shared set of outputs (the peer's in PyTorch) at
score threshold 0, where NMS sees its full ``nms_pre`` candidates per level, as in the
``detector`` benchmark (``--post-outputs own`` post-processes each runtime's own outputs).

Each group (backbones at 224, SSDLite at 320, DeepLabV3 at 512) is timed in one interleaved run
(:func:`~mobileone_dense.utils.timing.time_side_by_side`), batch 1, ``--threads`` threads in
every runtime; all ONNX Runtime sessions share one thread pool (see the ``export`` benchmark).
Each timed call follows untimed calls of the same candidate that last at least
``--settle-ms`` (:func:`~mobileone_dense.utils.timing.settle_by_time`): the shared pool's
workers keep spinning after each run and slow the LiteRT model timed next (it follows its ONNX
Runtime twin in every round but the ones it opens). With three settling calls, LiteRT FP32
MobileNetV2 read 9.2 ms (4.6 ms alone) and its ONNX Runtime twin 7.0 ms. With 50 ms, the
S0 backbone in LiteRT FP32 still read 6.4-6.5 ms (median) in the rounds where it followed ONNX
Runtime and 4.0-4.1 ms in those it opened (two runs of 150 rounds); with 200 ms, 4.43 and
4.37 ms. So the default is 200 ms. Then ``--calls`` calls (default 5) are timed one after
another, and their median is the candidate's time in that round: with one timed call a round,
LiteRT INT8 SSDLite-S0 read 4.3-9.4 ms over 30 rounds, a spread as wide as the differences the
targets judge.
Ratios are medians of per-round ratios: the INT8 speedup (LiteRT FP32 / LiteRT INT8), LiteRT
FP32 / ONNX Runtime FP32, and each model over the group's MobileNetV2 peer in the same runtime.
Weights are random (seeded, so a rerun converts nothing: files are cached under ``--work-dir``,
keyed by model, size and a fingerprint of the weights; ``--reconvert`` converts anew). Each
runtime's outputs are compared with PyTorch's once before timing (FP32: relative difference;
INT8: correlation), and the figures go into the JSON.

``--accuracy`` also evaluates the demo-trained checkpoints of ``make demo`` (no training) in
every format: box mAP and mIoU of the fused PyTorch model, ONNX, TFLite FP32 and TFLite INT8.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import apis
from ..errors import UsageError
from ..export.numerics import RTOL_CAP, compare, correlation
from ..runtimes.onnxruntime import ort_session, ort_use_shared_pool
from ..utils.capture import captured_output
from ..utils.timing import settle_by_time, time_side_by_side
from .common import WORK_DIR, add_timing_arguments, machine_info
from .deploy_convert import convert
from .deploy_models import RUNTIMES, Model, build_groups
from .deploy_report import agreement_notes, headlines, int8_note, model_rows, table
from .load import CPULoad, load_warning
from .plot import draw_deploy

#: Groups whose calls take long enough (about a second) to need only one warmup and settling call.
LONG_CALL_GROUPS = ('deeplabv3', )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--variants', nargs='*', default=list(apis.PAPER_VARIANTS),
                        choices=apis.VARIANTS, help='backbones (MobileNetV2 is added)')
    parser.add_argument('--det-variants', nargs='*', default=list(apis.PAPER_VARIANTS),
                        choices=apis.PAPER_VARIANTS,
                        help='SSDLite detectors (configs/ssdlite/mobileone_*.py; SSDLite-'
                             'MobileNetV2 is added)')
    parser.add_argument('--seg-variants', nargs='*', default=['s0'], choices=apis.PAPER_VARIANTS,
                        help='DeepLabV3 segmentors (configs/deeplabv3/mobileone_*_voc.py)')
    parser.add_argument('--det-configs', nargs='*', default=[], metavar='CONFIG',
                        help='more SSDLite configs to time with the detectors, named by file')
    parser.add_argument('--seg-configs', nargs='*', default=[], metavar='CONFIG',
                        help='more DeepLabV3 configs to time with the segmentors')
    parser.add_argument('--peers', action=argparse.BooleanOptionalAction, default=True,
                        help='add the MobileNetV2 backbone and SSDLite-MobileNetV2, converted '
                             'the same way (default: yes)')
    parser.add_argument('--backbone-size', type=int, default=224)
    parser.add_argument('--det-size', type=int, default=320)
    parser.add_argument('--seg-size', type=int, default=512)
    add_timing_arguments(
        parser, rounds=30, seg_rounds=10, warmup=3, settle=3, settle_ms=200, calls=5, threads=2,
        ort_pool='shared', stat='median', work_dir=str(WORK_DIR / 'deploy'),
        plot=str(WORK_DIR / 'deploy.png'), helps=dict(
            rounds='timed runs per candidate',
            seg_rounds='timed runs per segmentor candidate (they are slow)',
            settle='at least this many untimed calls of a candidate right before each timed '
                   'one (at most 1 for the DeepLabV3 group; see the export benchmark)',
            settle_ms='and as many as last this long: ONNX Runtime\'s shared pool keeps '
                      'spinning after a run, which slows the LiteRT model timed next '
                      '(%(default)s ms)',
            calls='timed calls of a candidate in each round, right after its settling calls; '
                  'their median is its time in that round (1 for the DeepLabV3 group)',
            threads='threads of PyTorch, of ONNX Runtime (intra-op) and of LiteRT '
                    "(XNNPACK's pool)",
            ort_pool='ONNX Runtime sessions on one thread pool (as the export benchmark), or a '
                     'pool each, not spinning',
            stat='statistic of the rounds for the latencies shown (ratios are always medians '
                 'of per-round ratios; the JSON has both)',
            work_dir='where the converted models are cached (default: %(default)s)'))
    parser.add_argument('--calib', type=int, default=8,
                        help='synthetic calibration images of each INT8 conversion')
    parser.add_argument('--score-thr', type=float, default=0.0,
                        help="the detectors' test_cfg.score_thr (%(default)s: NMS at full load)")
    parser.add_argument('--post-outputs', choices=['shared', 'own'], default='shared',
                        help="what the detectors' end-to-end candidates post-process: one "
                             "shared set of outputs (the peer's), or each runtime's own")
    parser.add_argument('--reconvert', action='store_true',
                        help='convert every model anew instead of reusing the cached files')
    parser.add_argument('--accuracy', action='store_true',
                        help='also evaluate the demo-trained checkpoints (make demo) in every '
                             'format: box mAP and mIoU per format')


# ------------------------------------------------------------------------------ runtimes
def runners(model: Model, paths: dict[str, Path], threads: int,
            ort_options: dict) -> dict[str, Callable[[], list]]:
    """Per runtime, a call of ``model``'s network on its image (outputs as a list)."""
    from ..runtimes.litert import LiteRTModel
    network, image = model.network, model.image
    session = ort_session(paths['onnx'], **ort_options)
    array = image.numpy()
    fns = {'pytorch': lambda: list(network(image)),
           'onnx': lambda: session.run(None, {'image': array})}
    nhwc = image.permute(0, 2, 3, 1).contiguous().numpy()
    for runtime in ('litert', 'litert_int8'):
        lite = LiteRTModel(paths[runtime], threads)

        def run(lite=lite):
            out = lite.runner(**{lite.input_name: nhwc})
            return [out[name] for name in lite.output_names]
        with captured_output():  # XNNPACK's line about its delegate, at the first call
            run()
        fns[runtime] = run
    return fns


def agreement(fns: dict[str, Callable[[], list]]) -> dict[str, dict]:
    """Each runtime's outputs against PyTorch's: FP32 relative differences, INT8 correlation.
    Only the outputs that are float in PyTorch count (a class map differs wherever two
    classes tie)."""
    with torch.inference_mode():
        expected = fns['pytorch']()
    floats = [i for i, e in enumerate(expected) if e.is_floating_point()]
    pick = lambda outputs: [outputs[i] for i in floats]  # noqa: E731
    report = {}
    for runtime in ('onnx', 'litert'):
        a = compare(pick(fns[runtime]()), pick(expected), RTOL_CAP)
        report[runtime] = dict(max_rel=a.max_rel, normwise=a.normwise, ok=a.ok)
    report['litert_int8'] = dict(correlation=correlation(pick(fns['litert_int8']()),
                                                         pick(expected)))
    return report


def candidates(model: Model, fns: dict[str, Callable[[], list]],
               shared: Optional[list]) -> dict[str, Callable[[], object]]:
    """The timed calls of ``model``: ``<name> <runtime>`` (the network) and, for a detector,
    ``<name> <runtime> e2e`` (the network, then the post-processing of ``shared`` outputs, or
    of its own when ``shared`` is None)."""
    out = {f'{model.name} {r}': fns[r] for r in RUNTIMES}
    if model.postprocess is not None:
        post = model.postprocess
        for r in RUNTIMES:
            out[f'{model.name} {r} e2e'] = (
                (lambda run=fns[r]: post(run())) if shared is None
                else (lambda run=fns[r]: (run(), post(shared))))
    return out


def shared_outputs(models: list[Model], fns: dict[str, dict], mode: str) -> dict[str, list]:
    """The outputs each detector post-processes in its end-to-end candidates: the peer's (or
    the first model's) PyTorch outputs when ``mode`` is ``shared`` and their shapes fit, else
    None (its own)."""
    if mode != 'shared' or not any(m.postprocess for m in models):
        return {m.name: None for m in models}
    source = next((m for m in models if m.peer), models[0])
    with torch.inference_mode():
        shared = fns[source.name]['pytorch']()
        own = {m.name: fns[m.name]['pytorch']() for m in models}
    fits = lambda o: [t.shape for t in o] == [t.shape for t in shared]  # noqa: E731
    return {m.name: shared if fits(own[m.name]) else None for m in models}


# ------------------------------------------------------------------------------ the run
def time_group(args: argparse.Namespace, group: str, models: list[Model],
               ort_options: dict) -> tuple[list[dict], dict, dict, float]:
    """Convert (or reuse), check and time one group; returns its rows, the raw timings, the
    agreement checks and the share of the CPU other processes used meanwhile."""
    print(f'{group}: converting (ONNX, LiteRT FP32, LiteRT INT8 with {args.calib} synthetic '
          f'calibration images) into {args.work_dir}', flush=True)
    fns = {m.name: runners(m, convert(m, Path(args.work_dir), args.calib, args.reconvert),
                           args.threads, ort_options) for m in models}
    checks = {f'{group} {name}': agreement(f) for name, f in fns.items()}
    shared = shared_outputs(models, fns, args.post_outputs)
    timed = {}
    for m in models:
        timed.update(candidates(m, fns[m.name], shared[m.name]))
    long_calls = group in LONG_CALL_GROUPS
    rounds = args.seg_rounds if group == 'deeplabv3' else args.rounds
    print(f'{group} at {models[0].size}x{models[0].size}: {len(timed)} candidates, {rounds} '
          f'interleaved rounds, batch 1, {args.threads} threads', flush=True)
    settle = settle_by_time(timed, args.settle_ms,
                            min(args.settle, 1) if long_calls else args.settle)
    with CPULoad() as load:
        result = time_side_by_side(
            timed, rounds=rounds, warmup=min(args.warmup, 1) if long_calls else args.warmup,
            settle=settle, calls=1 if long_calls else args.calls)
    for name, count in settle.items():
        result[name]['settle'] = count
    return model_rows(group, models, result, args.stat), result, checks, load.others


def run(args: argparse.Namespace) -> dict:
    timing = bool(args.variants or args.det_variants or args.det_configs or args.seg_variants
                  or args.seg_configs)
    if not (timing or args.accuracy):
        raise UsageError('Nothing to time: give --variants, --det-variants or --seg-variants '
                         'a variant (or --accuracy).')
    if args.calls < 1:
        raise UsageError(f'--calls {args.calls}: each candidate needs at least one timed call '
                         f'a round; give --calls 1 or more.')
    if args.accuracy:
        from .deploy_accuracy import check_demo_checkpoints
        check_demo_checkpoints()  # before minutes of timing
    torch.set_num_threads(args.threads)
    ort_options = dict(threads=args.threads, spinning=False,
                       shared_pool=timing and args.ort_pool == 'shared')
    if ort_options['shared_pool']:
        ort_use_shared_pool(args.threads)
    print('building the fused models ...', flush=True)
    groups = build_groups(args)
    rows, raw, checks, loads = [], {}, {}, {}
    for group, models in groups.items():
        group_rows, raw[group], group_checks, loads[group] = time_group(args, group, models,
                                                                        ort_options)
        rows += group_rows
        checks.update(group_checks)
    machine = machine_info()
    result = dict(benchmark='deploy', machine=machine, threads=args.threads,
                  rounds=args.rounds, seg_rounds=args.seg_rounds, settle=args.settle,
                  settle_ms=args.settle_ms, calls=args.calls,
                  ort_pool=args.ort_pool, calib=args.calib, calibration='synthetic',
                  score_thr=args.score_thr, post_outputs=args.post_outputs, stat=args.stat,
                  rows=rows, agreement=checks, others_load=loads, raw=raw)
    if rows:
        text = table(rows, args.stat)
        lines = headlines(rows) + int8_note(machine) + agreement_notes(checks) + [
            f'{g}: other processes used {100 * load:.0f}% of the CPU meanwhile'
            for g, load in loads.items()] + load_warning(loads, args.threads)
        print(text, *lines, sep='\n')
        plot = draw_deploy(rows, args.plot, args.stat, args.threads) if args.plot else None
        if plot:
            print(f'drew {plot}')
        result.update(table=text, notes=lines, plot=str(plot) if plot else None)
    if args.accuracy:
        from .deploy_accuracy import evaluate_demos, evaluate_demos_apart
        # the export's and the evaluation's ONNX Runtime sessions have a pool each, which a
        # process with the shared pool refuses
        evaluate = evaluate_demos_apart if ort_options['shared_pool'] else evaluate_demos
        result['accuracy'] = evaluate(Path(args.work_dir), args.threads, args.reconvert)
    return result
