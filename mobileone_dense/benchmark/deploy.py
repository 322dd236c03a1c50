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
workers spin for about 40 ms after each run: with three settling calls, LiteRT FP32
MobileNetV2 read 9.2 ms (4.6 ms alone) and its ONNX Runtime twin 7.0 ms; with 50 ms, 4.5 and
4.5 ms.
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
import hashlib
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import apis
from ..errors import UsageError
from ..export.fusion import fuse
from ..export.graph import Normalize
from ..export.numerics import RTOL_CAP, compare, correlation, make_image
from ..models import MobileOne
from ..runtimes.onnxruntime import ort_session, ort_use_shared_pool
from ..tasks import task_of
from ..utils.capture import captured_output
from ..utils.timing import settle_by_time, time_side_by_side
from .common import SEG_OPTIONS, WORK_DIR, format_table, machine_info, measure_bn, num_params
from .export import paired_median
from .load import CPULoad, load_warning
from .plot import DEPLOY_RUNTIMES, draw_deploy

PEER = apis.PEER_NAME
#: The runtimes, in the order of the table and the picture, and their labels.
RUNTIMES = tuple(key for key, _, _ in DEPLOY_RUNTIMES)
RUNTIME_LABELS = {key: label for key, label, _ in DEPLOY_RUNTIMES}
#: The converted file of each runtime, after the model's key.
SUFFIXES = {'onnx': '.onnx', 'litert': '.tflite', 'litert_int8': '_int8.tflite'}
NETWORK, END_TO_END = 'network', 'end to end'
#: Groups by the task of their configs (the backbones have none).
DENSE_GROUPS = {'ssdlite': 'detection', 'deeplabv3': 'segmentation'}
#: Groups whose calls take long enough (about a second) to need only one warmup and settling call.
LONG_CALL_GROUPS = ('deeplabv3', )
#: The configs' ImageNet normalisation (mean, std; BGR images are swapped to RGB first).
IMAGENET = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])


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
    parser.add_argument('--rounds', type=int, default=30, help='timed runs per candidate')
    parser.add_argument('--seg-rounds', type=int, default=10,
                        help='timed runs per segmentor candidate (they are slow)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--settle', type=int, default=3,
                        help='at least this many untimed calls of a candidate right before each '
                             'timed one (at most 1 for the DeepLabV3 group; see the export '
                             'benchmark)')
    parser.add_argument('--settle-ms', type=float, default=50,
                        help='and as many as last this long: ONNX Runtime\'s shared pool spins '
                             'for ~40 ms after a run, which slows the LiteRT model timed next '
                             '(%(default)s ms)')
    parser.add_argument('--threads', type=int, default=2,
                        help='threads of PyTorch, of ONNX Runtime (intra-op) and of LiteRT '
                             "(XNNPACK's pool)")
    parser.add_argument('--ort-pool', choices=['shared', 'per-session'], default='shared',
                        help='ONNX Runtime sessions on one thread pool (as the export '
                             'benchmark), or a pool each, not spinning')
    parser.add_argument('--calib', type=int, default=8,
                        help='synthetic calibration images of each INT8 conversion')
    parser.add_argument('--score-thr', type=float, default=0.0,
                        help="the detectors' test_cfg.score_thr (%(default)s: NMS at full load)")
    parser.add_argument('--post-outputs', choices=['shared', 'own'], default='shared',
                        help="what the detectors' end-to-end candidates post-process: one "
                             "shared set of outputs (the peer's), or each runtime's own")
    parser.add_argument('--stat', choices=['median', 'min'], default='median',
                        help='statistic of the rounds for the latencies shown (ratios are '
                             'always medians of per-round ratios; the JSON has both)')
    parser.add_argument('--work-dir', default=str(WORK_DIR / 'deploy'),
                        help='where the converted models are cached (default: %(default)s)')
    parser.add_argument('--reconvert', action='store_true',
                        help='convert every model anew instead of reusing the cached files')
    parser.add_argument('--plot', default=str(WORK_DIR / 'deploy.png'),
                        help="where the picture goes (default: %(default)s; '' for none)")
    parser.add_argument('--accuracy', action='store_true',
                        help='also evaluate the demo-trained checkpoints (make demo) in every '
                             'format: box mAP and mIoU per format')


# ------------------------------------------------------------------------------ the models
class BackboneNetwork(nn.Module):
    """A bare backbone as the runtimes run it: the configs' normalisation, then the backbone's
    last map. Both sit in ``core`` (what INT8 quantizes, as
    :class:`~mobileone_dense.export.graph.NetworkCore`): without a float op in front,
    litert-torch would make the graph's input itself int8."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        from mmdet.models.data_preprocessors import DetDataPreprocessor
        mean, std = IMAGENET
        normalize = Normalize(DetDataPreprocessor(mean=mean, std=std, bgr_to_rgb=True))
        self.core = nn.Sequential(normalize, backbone).eval()

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.core(image)  # mmdet backbones give a tuple of maps
        return tuple(out) if isinstance(out, (tuple, list)) else (out, )


@dataclass
class Model:
    """One network of a group, as every runtime runs it.

    ``postprocess``: a detector's post-processing (network outputs -> detections), else None.
    ``peer``: the group's MobileNetV2 (the denominator of the ``vs MNV2`` ratios).
    """
    group: str
    name: str
    size: int
    network: nn.Module
    params: int
    postprocess: Optional[Callable] = None
    peer: bool = False
    image: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.image = make_image((self.size, self.size))

    @property
    def key(self) -> str:
        """The model's name in the cache: group, model and input size."""
        return f'{self.group}_{"mnv2" if self.peer else self.name}_{self.size}'


def _fused(build: Callable[[], nn.Module], core: Callable[[nn.Module], nn.Module],
           size: int) -> nn.Module:
    """The fused model of ``build`` (seeded random weights, so that a rerun builds the model
    its cached files hold), its BN statistics measured first on four synthetic images through
    ``core(model)`` (the part of its network that INT8 quantizes; see
    :func:`~.common.measure_bn`)."""
    torch.manual_seed(0)
    model = build()
    images = torch.cat([make_image((size, size), seed) for seed in range(100, 104)])
    measure_bn(core(model), images)
    model.eval()  # not chained: mmdet's MobileNetV2.train() returns None
    return fuse(model, fold_bn=True)


def backbone_models(variants: Sequence[str], size: int, peer: bool) -> list[Model]:
    """The fused S0-S4 backbones (stage4 output) and, with ``peer``, mmdet's MobileNetV2."""
    builds = {v: lambda v=v: MobileOne(v, out_indices=(4, )).eval() for v in variants}
    if peer:
        builds[PEER] = apis.mobilenet_v2_backbone
    models = []
    for name, build in builds.items():
        fused = _fused(build, lambda m: BackboneNetwork(m).core, size)
        models.append(Model('backbone', name, size, BackboneNetwork(fused).eval(),
                            num_params(fused), peer=name == PEER))
    return models


def dense_models(group: str, variants: Sequence[str], configs: Sequence[str], size: int,
                 peer: bool, score_thr: float) -> list[Model]:
    """SSDLite or DeepLabV3 (:data:`DENSE_GROUPS`): the variants' configs, extra ``configs``
    (named by file) and, with ``peer``, the MobileNetV2 model, each fused, as its task's
    :meth:`~mobileone_dense.tasks.Task.network` (and a detector's ``postprocessor``)."""
    task_name = DENSE_GROUPS[group]
    options = ({'model.test_cfg.score_thr': score_thr} if task_name == 'detection'
               else SEG_OPTIONS)
    cfgs = {f'MobileOne-{v.upper()}': apis.mobileone_config(task_name, v, options)
            for v in variants}
    # the extra configs keep their classes (a head of their own)
    extra = options if task_name == 'detection' else None
    cfgs.update({Path(c).stem: apis.load_config(c, extra) for c in configs})
    if peer:
        cfgs[PEER] = apis.peer_config(task_name, options)
    models = []
    for name, cfg in cfgs.items():
        task = task_of(cfg)
        fused = _fused(lambda cfg=cfg: apis.build_model(cfg),
                       lambda m, task=task: task.network(m, (size, size)).core, size)
        post = task.postprocessor(fused, (size, size)) if task_name == 'detection' else None
        models.append(Model(group, name, size, task.network(fused, (size, size)),
                            num_params(fused), post, peer=name == PEER))
    return models


def build_groups(args: argparse.Namespace) -> dict[str, list[Model]]:
    groups = {}
    if args.variants:
        groups['backbone'] = backbone_models(args.variants, args.backbone_size, args.peers)
    if args.det_variants or args.det_configs:
        groups['ssdlite'] = dense_models('ssdlite', args.det_variants, args.det_configs,
                                         args.det_size, args.peers, args.score_thr)
    if args.seg_variants or args.seg_configs:
        # No peer: mmseg's MobileNetV2 DeepLabV3-D8 takes seconds per call at 512.
        groups['deeplabv3'] = dense_models('deeplabv3', args.seg_variants, args.seg_configs,
                                           args.seg_size, False, args.score_thr)
    return groups


# ------------------------------------------------------------------------------ conversion cache
def fingerprint(network: nn.Module, size: int) -> str:
    """A hash of the network's class, weights and buffers and the input size."""
    h = hashlib.sha1(f'{type(network).__name__} {size}'.encode())
    for name, tensor in network.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def cached_files(key: str, stamps: dict[str, str], writers: dict[str, Callable[[Path], object]],
                 work_dir: Path, reconvert: bool = False) -> tuple[dict[str, Path], dict]:
    """The converted files of one model: ``work_dir/<key><suffix>`` per runtime of ``writers``,
    reused when the record ``work_dir/<key>.json`` holds the same stamp for it (and the file is
    there), else written by ``writers[runtime](path)``.

    Returns the paths and, per runtime, whether it was reused and how long writing took.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    record_path = work_dir / f'{key}.json'
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    paths, info = {}, {}
    for runtime, write in writers.items():
        path = paths[runtime] = work_dir / f'{key}{SUFFIXES[runtime]}'
        if not reconvert and path.is_file() and record.get(runtime) == stamps[runtime]:
            info[runtime] = dict(reused=True)
            continue
        record.pop(runtime, None)
        start = time.perf_counter()
        write(path)
        info[runtime] = dict(reused=False, seconds=time.perf_counter() - start)
        record[runtime] = stamps[runtime]
        record_path.write_text(json.dumps(record, indent=1))
    return paths, info


def convert(model: Model, work_dir: Path, calib: int, reconvert: bool) -> dict[str, Path]:
    """ONNX, LiteRT FP32 and LiteRT INT8 files of ``model`` (cached); prints one line."""
    from ..export.litert import write_tflite
    from ..export.onnx import export_onnx
    stamp = fingerprint(model.network, model.size)
    image, network, size = model.image, model.network, (model.size, model.size)
    calibration = [make_image(size, seed) for seed in range(1, calib + 1)]
    writers = {
        'onnx': lambda p: export_onnx(network, image, p),
        'litert': lambda p: write_tflite(network, image, p),
        'litert_int8': lambda p: write_tflite(network, image, p, calibration=calibration)}
    stamps = {'onnx': stamp, 'litert': stamp, 'litert_int8': f'{stamp} calib {calib}'}
    paths, info = cached_files(model.key, stamps, writers, Path(work_dir), reconvert)
    done = ', '.join(f'{RUNTIME_LABELS[r]} ' + ('cached' if i['reused'] else
                                                  f'{i["seconds"]:.0f} s')
                     for r, i in info.items())
    print(f'  {model.group} {model.name} at {model.size}: {done}', flush=True)
    return paths


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


# ------------------------------------------------------------------------------ figures
def model_rows(group: str, models: list[Model], result: dict, stat: str) -> list[dict]:
    """One row per model and part (``network``; ``end to end`` for detectors): latencies per
    runtime and the ratios, each the median over rounds of the ratio within a round."""
    peer = next((m for m in models if m.peer), None)
    rows = []
    for model in models:
        parts = [(NETWORK, '')] + ([(END_TO_END, ' e2e')] if model.postprocess else [])
        for part, suffix in parts:
            rounds = {r: result[f'{model.name} {r}{suffix}']['rounds_ms'] for r in RUNTIMES}
            row = dict(group=group, model=model.name, size=model.size, part=part,
                       peer=model.peer, params_m=model.params / 1e6,
                       ms={r: result[f'{model.name} {r}{suffix}'][f'{stat}_ms']
                           for r in RUNTIMES},
                       median_ms={r: statistics.median(t) for r, t in rounds.items()},
                       min_ms={r: min(t) for r, t in rounds.items()},
                       int8_speedup=paired_median(lambda f, q: f / q, rounds['litert'],
                                                  rounds['litert_int8']),
                       litert_over_onnx=paired_median(lambda t, o: t / o, rounds['litert'],
                                                      rounds['onnx']))
            if peer is not None and not model.peer:
                peer_rounds = {r: result[f'{peer.name} {r}{suffix}']['rounds_ms']
                               for r in RUNTIMES}
                row['over_peer'] = {r: paired_median(lambda m, p: m / p, rounds[r],
                                                     peer_rounds[r]) for r in RUNTIMES}
            rows.append(row)
    return rows


def table(rows: list[dict], stat: str) -> str:
    header = ['model', 'input', 'part'] + [
        f'{RUNTIME_LABELS[r]} ms' + (f' ({stat})' if i == 0 else '')
        for i, r in enumerate(RUNTIMES)] + [
        'INT8 speedup (LiteRT FP32/INT8)', 'LiteRT FP32 / ORT FP32', 'INT8 / MNV2 INT8']
    lines = []
    for r in rows:
        name = r['model'] if r['group'] == 'backbone' else f'{r["group"]} {r["model"]}'
        over = r.get('over_peer', {}).get('litert_int8')
        lines.append([name, r['size'], r['part'], *(r['ms'][k] for k in RUNTIMES),
                      r['int8_speedup'], r['litert_over_onnx'],
                      '-' if over is None else over])
    return format_table(header, lines)


def headlines(rows: list[dict]) -> list[str]:
    """The comparison the deployment is judged by: SSDLite-MobileOne-S0 against
    SSDLite-MobileNetV2, both INT8 in LiteRT, network and end to end."""
    pick = {r['part']: r['over_peer']['litert_int8'] for r in rows
            if r['group'] == 'ssdlite' and r['model'] == 'MobileOne-S0' and 'over_peer' in r}
    if not pick:
        return []
    parts = ', '.join(f'{part} {ratio:.2f}x' for part, ratio in pick.items())
    return [f'SSDLite-MobileOne-S0 INT8 / SSDLite-MobileNetV2 INT8 in LiteRT (time ratio, '
            f'median of per-round ratios): {parts}']


def agreement_notes(checks: dict[str, dict]) -> list[str]:
    """A line per FP32 conversion whose outputs stray from PyTorch's beyond float tolerance."""
    lines = []
    for name, report in checks.items():
        for runtime in ('onnx', 'litert'):
            if not report[runtime]['ok']:
                lines.append(f'WARNING: {RUNTIME_LABELS[runtime]} of {name} differs from '
                             f'PyTorch (max rel diff {report[runtime]["max_rel"]:.1e}): a stale '
                             f'cached file? rerun with --reconvert.')
    return lines


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
            settle=settle)
    for name, count in settle.items():
        result[name]['settle'] = count
    return model_rows(group, models, result, args.stat), result, checks, load.others


def run(args: argparse.Namespace) -> dict:
    timing = bool(args.variants or args.det_variants or args.det_configs or args.seg_variants
                  or args.seg_configs)
    if not (timing or args.accuracy):
        raise UsageError('Nothing to time: give --variants, --det-variants or --seg-variants '
                         'a variant (or --accuracy).')
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
    result = dict(benchmark='deploy', machine=machine_info(), threads=args.threads,
                  rounds=args.rounds, seg_rounds=args.seg_rounds, settle=args.settle,
                  ort_pool=args.ort_pool, calib=args.calib, calibration='synthetic',
                  score_thr=args.score_thr, post_outputs=args.post_outputs, stat=args.stat,
                  rows=rows, agreement=checks, others_load=loads, raw=raw)
    if rows:
        text = table(rows, args.stat)
        lines = headlines(rows) + agreement_notes(checks) + [
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
