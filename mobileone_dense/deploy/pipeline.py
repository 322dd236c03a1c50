"""The export pipeline: a trained checkpoint in, checked deployment files out.

:func:`export` loads the train-time checkpoint strictly, fuses every MobileOne block, proves on
an input that the fused model gives the train-time outputs, and writes ``fused.pth`` (the fused
state_dict and the checkpoint's meta), ``train_config.py`` (the training config, flattened) and
``deploy_config.py`` (two lines over it: ``deploy=True``, no pretrained init, so mmengine loads
``fused.pth`` strictly), then one file per requested format (:data:`FORMATS`), each checked
against PyTorch where it can run here (docs/deploy.md has the table). The INT8 file is refused
only if its outputs are not finite: 8 bits do not agree to float tolerance, and the data set's
metric judges them. Nothing is written unless every check passes.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..apis import build_model, load_checkpoint, load_config
from ..errors import ExportError
from ..export.coreml import SEGMENTOR_OUTPUTS, export_coreml
from ..export.coreml_pipeline import vision_nms
from ..export.litert import write_tflite
from ..export.litert_metadata import write_metadata
from ..export.numerics import RTOL, check_fused, compare, correlation, make_image, raw_outputs
from ..export.onnx import export_onnx
from ..models import has_mobileone, reparameterize_model
from ..models.checkpoint import check_state_dict
from ..runtimes.litert import LiteRTModel
from ..runtimes.onnxruntime import ort_session
from ..tasks import Task, task_of
from .calibration import DEFAULT_COUNT, calibration_images

DEPLOY_CONFIG = """\
# Deploy config written by tools/export.py: the training config with every MobileOne block
# fused (deploy=True) and no pretrained init. It loads fused.pth strictly, e.g.
#   python tools/test.py {dir}/deploy_config.py {dir}/fused.pth
_base_ = './train_config.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
"""


@dataclass
class Options:
    """The format options of :func:`export` (``tools/export.py`` flags)."""
    calib: int = DEFAULT_COUNT  # INT8: how many calibration images
    calib_data: Optional[str] = None  # INT8: a folder of images instead of the config's data
    coreml_precision: str = 'fp16'


@dataclass
class Context:
    """What a format writer gets: the fused deploy model, its config and task, a test image and
    the tolerance the fused model met, the options, and the folder to write into."""
    model: nn.Module
    cfg: object
    task: Task
    image: Tensor
    input_size: tuple[int, int]
    rtol: float
    out_dir: Path
    log: Callable[[str], None]
    options: Options = field(default_factory=Options)
    classes: Sequence[str] = ()
    _network: Optional[nn.Module] = None
    _app_network: Optional[nn.Module] = None

    @property
    def network(self) -> nn.Module:
        """:meth:`Task.network` of the fused model, built once."""
        if self._network is None:
            self._network = self.task.network(self.model, self.input_size)
        return self._network

    @property
    def app_network(self) -> nn.Module:
        """The network's ``app=True`` form (RGB in, MediaPipe's outputs), built once."""
        if self._app_network is None:
            self._app_network = self.task.network(self.model, self.input_size, app=True)
        return self._app_network

    def network_outputs(self, image: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return list(self.network(image))

    def write_app_tflite(self, name: str, calibration=None) -> tuple[Path, list, list]:
        """``name`` (a LiteRT file of :attr:`app_network` with MediaPipe's metadata), its
        outputs in LiteRT on the test image, and the network's outputs (:meth:`network`'s form)
        from them."""
        rgb = self.image.flip(1)
        path = write_tflite(self.app_network, rgb, self.out_dir / name, calibration)
        write_metadata(path, self.task.name, self.classes)
        outputs = LiteRTModel(path, threads=2)(rgb.numpy())
        return path, outputs, self.task.from_app_outputs(outputs, self.model, self.input_size)


def write_onnx(ctx: Context) -> dict:
    """``model.onnx``: the graph of :meth:`Task.export_wrapper`, run in ONNX Runtime and
    compared with the package's own ``predict``."""
    wrapper = ctx.task.export_wrapper(ctx.model, ctx.input_size)
    path = export_onnx(wrapper, ctx.image, ctx.out_dir / 'model.onnx', ctx.task.output_names)
    reference = ctx.task.predictions(ctx.model, ctx.image)
    with torch.no_grad():
        graph = ctx.task.compare_predictions(wrapper(ctx.image), reference, ctx.rtol,
                                             ctx.input_size)
    ctx.log(f'export graph in PyTorch vs {ctx.task.scope} predict: {graph.text}')
    ort_out = ort_session(path).run(None, {'image': ctx.image.numpy()})
    onnx = ctx.task.compare_predictions(ort_out, reference, ctx.rtol, ctx.input_size)
    ctx.log(f'ONNX Runtime vs PyTorch ({ctx.task.scope} predict): {onnx.text}')
    if not (graph.ok and onnx.ok):
        raise ExportError('ONNX Runtime disagrees with PyTorch beyond tolerance (see above), '
                          'so nothing was written: report this with the config.')
    return onnx.details


def _float_outputs(outputs: Sequence) -> list:
    """The floating-point outputs (class maps are compared as predictions instead)."""
    return [o for o in outputs if torch.as_tensor(o).is_floating_point()]


def write_tflite_fp32(ctx: Context) -> dict:
    """``model.tflite``: :meth:`Task.network` in LiteRT, compared with PyTorch (the network's
    outputs, and the final predictions after the task's post-processing)."""
    ctx.log('converting to LiteRT FP32 (litert-torch), RGB input, MediaPipe metadata')
    _, raw, outputs = ctx.write_app_tflite('model.tflite')
    with torch.no_grad():
        expected = list(ctx.app_network(ctx.image.flip(1)))
    network = compare(_float_outputs(raw), _float_outputs(expected), ctx.rtol)
    ctx.log(f'LiteRT FP32 vs PyTorch, network outputs: {network}')
    post = ctx.task.postprocessor(ctx.model, ctx.input_size)
    final = ctx.task.compare_predictions(post(outputs), ctx.task.predictions(ctx.model, ctx.image),
                                         ctx.rtol, ctx.input_size)
    ctx.log(f'LiteRT FP32 vs PyTorch ({ctx.task.scope} predict): {final.text}')
    if not (network.ok and final.ok):
        raise ExportError('LiteRT disagrees with PyTorch beyond tolerance (see above), so nothing '
                          'was written: report this with the config.')
    return dict(network=vars(network), predictions=final.details)


#: Tolerance of the INT8 model's predictions against float, for the printed figures only:
#: 8 bits do not agree to float tolerance, and the data set's metric judges them.
INT8_RTOL = 0.02


def write_tflite_int8(ctx: Context) -> dict:
    """``model_int8.tflite`` (int8, calibrated) and ``model_int8.calibration.json`` (which
    images); prints how closely it follows the float network."""
    opts = ctx.options
    ctx.log(f'INT8: reading up to {opts.calib} calibration images from '
            f'{opts.calib_data or "the config" + chr(39) + "s training data"}')
    images, record = calibration_images(ctx.cfg, ctx.input_size, opts.calib, opts.calib_data)
    ctx.log(f'converting to LiteRT INT8 (PT2E, per-channel weights, calibrated on '
            f'{len(images)} images; about a minute)')
    _, _, outputs = ctx.write_app_tflite('model_int8.tflite', [i.flip(1) for i in images])
    record.update(input_size=list(ctx.input_size), quantization='int8 weights (symmetric, per '
                  'output channel) and activations (per tensor), PT2E with litert-torch')
    (ctx.out_dir / 'model_int8.calibration.json').write_text(json.dumps(record, indent=2))
    expected = ctx.network_outputs(ctx.image)
    corr = correlation(_float_outputs(outputs), _float_outputs(expected))
    if math.isnan(corr):  # non-finite outputs
        raise ExportError('The INT8 model gives non-finite outputs, so nothing was written: '
                          'calibrate on images like the deployed inputs (--calib-data DIR).')
    post = ctx.task.postprocessor(ctx.model, ctx.input_size)
    final = ctx.task.compare_predictions(post(outputs), ctx.task.predictions(ctx.model, ctx.image),
                                         INT8_RTOL, ctx.input_size)
    figures = re.sub(': (OK|MISMATCH)', '', final.text)
    ctx.log(f'LiteRT INT8 vs PyTorch float: network outputs correlate {corr:.4f}; predictions '
            f'at {INT8_RTOL:.0%} tolerance: {figures} (tools/test.py CONFIG model_int8.tflite '
            f'measures the accuracy)')
    return dict(correlation=corr, predictions=final.details, calibration_images=len(images))


def write_coreml(ctx: Context) -> dict:
    """``model.mlpackage``: a detector as a Vision pipeline (:meth:`Task.network` as an ML
    program, then class-wise NMS at the config's thresholds, labelled with the class names), a
    segmentor as an ML program declaring its class map alone; checked by reading it (Core ML
    cannot predict on Linux)."""
    detector = ctx.task.name == 'detection'
    nms = (vision_nms(ctx.cfg.model.test_cfg, ctx.network.num_classes, ctx.classes, ctx.log)
           if detector else None)
    return export_coreml(ctx.network, ctx.image, ctx.out_dir / 'model.mlpackage',
                         precision=ctx.options.coreml_precision,
                         output_names=ctx.task.network_output_names if detector
                         else SEGMENTOR_OUTPUTS, log=ctx.log, nms=nms)


#: Format name -> writer; each writes its file(s) into ``ctx.out_dir`` and returns its checks.
FORMATS: dict[str, Callable[[Context], dict]] = {
    'onnx': write_onnx, 'tflite': write_tflite_fp32, 'tflite-int8': write_tflite_int8,
    'coreml': write_coreml}
#: Files a format writes, in the order they are moved out of the scratch folder.
FILES = ('fused.pth', 'train_config.py', 'deploy_config.py', 'model.onnx', 'model.tflite',
         'model_int8.tflite', 'model_int8.calibration.json', 'model.mlpackage')


def _class_names(meta: dict, model: nn.Module, formats: Sequence[str], log) -> list[str]:
    """The checkpoint's class names (the labels the app files carry), or ``0..N-1``, said in
    one line, when it names none."""
    classes = (meta.get('dataset_meta') or {}).get('classes')
    if classes:
        return [str(c) for c in classes]
    head = getattr(model, 'bbox_head', None) or getattr(model, 'decode_head', None)
    count = int(getattr(head, 'num_classes', 0))
    if any(f.startswith('tflite') or f == 'coreml' for f in formats):
        log(f'note: the checkpoint names no classes (meta.dataset_meta.classes), so the '
            f'exported files label them 0..{count - 1}')
    return [str(i) for i in range(count)]


def _input_size(cfg, task: Task, input_size: Optional[Sequence[int]]) -> tuple[int, int]:
    size = tuple(input_size) if input_size else task.default_input_size(cfg)
    if len(size) != 2 or min(size) < 32:
        raise ExportError(f'--input-size must be two numbers H W of at least 32, got {size}.')
    return int(size[0]), int(size[1])


def export(config: str | Path, checkpoint: str | Path, out_dir: str | Path,
           formats: Sequence[str] = (), input_size: Optional[Sequence[int]] = None,
           cfg_options: Optional[dict] = None, rtol: float = RTOL, log=print,
           options: Optional[Options] = None) -> dict:
    """Fuse a trained model and write ``fused.pth``, ``deploy_config.py`` and ``formats``.

    Args:
        config: The training config.
        checkpoint: The train-time checkpoint (mmengine's, with ``state_dict`` and ``meta``).
        out_dir: Where the files go (created).
        formats: Names from :data:`FORMATS` to write and check as well.
        input_size: (H, W) of the check input and of the exported graphs; default: the
            config's.
        cfg_options: Overrides of the config, as ``--cfg-options``.
        rtol: Smallest tolerance of the checks (a model that amplifies float32 rounding more
            gets more, up to a fixed cap: :func:`~.numerics.float_tolerance`).
        log: Where progress lines go.
        options: Format options (:class:`Options`: INT8 calibration, Core ML precision).

    Returns:
        What was written and measured (paths, agreements).

    Raises:
        ExportError, CheckpointMismatchError: With one sentence naming the problem and the fix.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f'Unknown export format {unknown[0]!r}: choose from '
                          f'{", ".join(FORMATS)}.')
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ExportError(f'--out-dir {out_dir} is an existing file: give a folder (it is '
                          f'created if missing).')
    cfg = load_config(config, cfg_options)
    task = task_of(cfg)
    size = _input_size(cfg, task, input_size)
    model = build_model(cfg)
    if not has_mobileone(model):
        raise ExportError(f'{config} builds no MobileOne block, so there is nothing to fuse: '
                          f'export a config with a MobileOne backbone.')
    meta = load_checkpoint(model, checkpoint)
    log(f'loaded the train-time checkpoint {checkpoint} into {type(model).__name__} '
        f'({task.name}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params)')

    fused = reparameterize_model(model)
    image = make_image(size)
    inputs, _ = task.preprocess(model, image)
    agreement, noise = check_fused(model, fused, inputs, rtol, ', so nothing was written')
    log(f'fused vs train-time on a {size[0]}x{size[1]} input: {agreement}')
    log(f'  (tolerance: 8x the float32 rounding error of the train-time model itself, '
        f'{noise:.1e} against float64, within [{rtol:.1e}, cap])')
    fused_sd = fused.state_dict()
    report = dict(task=task.name, input_size=size, fused=vars(agreement), float32_error=noise,
                  params_train=sum(p.numel() for p in model.parameters()),
                  params_fused=sum(p.numel() for p in fused.parameters()))

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg.dump(str(tmp / 'train_config.py'))
        (tmp / 'deploy_config.py').write_text(DEPLOY_CONFIG.format(dir=out_dir))
        deploy_cfg = load_config(tmp / 'deploy_config.py')
        deploy_model = build_model(deploy_cfg)
        check_state_dict(deploy_model, fused_sd, source='The fused state_dict')
        deploy_model.load_state_dict(fused_sd, strict=True)
        deploy = compare(raw_outputs(deploy_model, inputs), raw_outputs(model, inputs),
                         agreement.rtol)
        if not deploy.ok:
            raise ExportError(f'The model of deploy_config.py with the fused weights differs '
                              f'from the train-time model ({deploy}); nothing was written.')
        meta = dict(meta)
        meta['cfg'] = deploy_cfg.pretty_text  # inferencers given only fused.pth build this
        meta['mobileone_dense_export'] = dict(
            train_checkpoint=str(checkpoint), train_config=str(config),
            fused_max_rel_diff=agreement.max_rel, input_size=list(size))
        if 'dataset_meta' not in meta:
            log('note: the checkpoint has no dataset_meta (class names); inferencers will '
                'fall back to the dataset defaults')
        torch.save(dict(meta=meta, state_dict=fused_sd), tmp / 'fused.pth')

        ctx = Context(deploy_model, deploy_cfg, task, image, size, agreement.rtol, tmp, log,
                      options or Options(), _class_names(meta, deploy_model, formats, log))
        for name in formats:
            report[name] = FORMATS[name](ctx)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for name in FILES:
            if (tmp / name).exists():
                if (out_dir / name).is_dir():  # an earlier model.mlpackage
                    shutil.rmtree(out_dir / name)
                shutil.move(str(tmp / name), str(out_dir / name))
                written[name] = str(out_dir / name)
    report['written'] = written
    for path in written.values():
        log(f'wrote {path}')
    return report
