"""Deploy-time export of a trained MobileOne detector or segmentor.

The paper's promise (Vasu et al., "MobileOne: An Improved One millisecond Mobile Backbone",
CVPR 2023) is that the train-time branches cost nothing at inference. :func:`export` makes that
true for a trained OpenMMLab model: it loads the train-time checkpoint strictly, fuses every
MobileOne block with :func:`~mobileone_dense.reparameterize_model`, proves on an input that the
fused model gives the train-time outputs, and writes

- ``fused.pth``: the fused state_dict and the checkpoint's meta (class names included);
- ``train_config.py``: the training config, flattened (inheritance resolved);
- ``deploy_config.py``: two lines over ``train_config.py`` (``deploy=True``, no pretrained
  init); it builds exactly the model that ``fused.pth`` fits, so mmengine loads it strictly;
- ``model.onnx`` (optional): the fused model with its post-processing, checked in ONNX Runtime
  against PyTorch (see :class:`DetectorExport` and :class:`SegmentorExport`).

Nothing is written unless the fused model matches the train-time one.

ONNX export uses torch's default exporter (``torch.onnx.export(..., dynamo=True)``, based on
``torch.export``; it needs the ``onnxscript`` package). The legacy TorchScript exporter is
deprecated and announced for removal. Non-maximum suppression is a small custom op
(``mobileone_dense::nms``) that runs mmcv's NMS in PyTorch and becomes ONNX's
``NonMaxSuppression`` in the graph, so the exported detector contains its NMS.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.checkpoint import CheckpointMismatchError, check_state_dict, extract_state_dict
from .reparam import reparameterize_model

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation'}
#: Smallest tolerance of the fused against the train-time outputs (and of ONNX Runtime against
#: PyTorch), relative to the largest output value: 5000 float32 ulps (see float_tolerance).
#: Fusion is exact up to float rounding, which grows with depth to ~1e-6 .. 1e-4; a fusion bug
#: (a padding, a bias, a skip kernel) is off by 1e-2 or more.
RTOL = 5000 * torch.finfo(torch.float32).eps
ONNX_OPSET = 18


class ExportError(ValueError):
    """The config, checkpoint or model cannot be exported; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Config and model
# --------------------------------------------------------------------------------------------
def load_config(path: str | Path, cfg_options: Optional[dict] = None):
    """Read an mmengine config; ``cfg_options`` as ``--cfg-options`` gives them."""
    from mmengine.config import Config
    if not Path(path).is_file():
        raise ExportError(f'Config {path} does not exist: pass the .py config the model was '
                          f'trained with.')
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def task_of(cfg) -> str:
    """``mmdet`` or ``mmseg``, from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ExportError(f"The config's default_scope is {scope!r}: export handles detectors "
                          f"(default_scope='mmdet') and segmentors (default_scope='mmseg'); "
                          f'set it in the config.')
    return scope


def build_model(cfg) -> nn.Module:
    """Build ``cfg.model`` in eval mode without touching the network or any pretrained file.

    Every ``init_cfg`` is dropped (weights come from a checkpoint) and SyncBN becomes BN, as
    mmengine's runner does outside distributed training.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    scope = task_of(cfg)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(scope)
    model_cfg = _without_init_cfg(copy.deepcopy(cfg.model))
    model_cfg.pop('pretrained', None)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(model_cfg)
    model = revert_sync_batchnorm(model)
    model.eval()  # our call, not a chained one: some OpenMMLab modules return None from train()
    return model


def _without_init_cfg(cfg):
    if isinstance(cfg, dict):
        return type(cfg)({k: (None if k == 'init_cfg' else _without_init_cfg(v))
                          for k, v in cfg.items()})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_without_init_cfg(v) for v in cfg)
    return cfg


def load_train_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a train-time checkpoint strictly; returns its ``meta`` (may be empty).

    Raises:
        CheckpointMismatchError: One sentence naming the first mismatched keys.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if not Path(path).is_file():
        raise ExportError(f'Checkpoint {path} does not exist: pass the .pth file that training '
                          f'wrote (e.g. work_dirs/<config>/epoch_200.pth).')
    checkpoint = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    state_dict = extract_state_dict(checkpoint)
    fused_keys = [k for k in state_dict if '.reparam_conv.' in k]
    if fused_keys and not any('.reparam_conv.' in k for k in model.state_dict()):
        raise CheckpointMismatchError(
            f'{path} is already fused ({fused_keys[0]} ...): export needs the train-time '
            f'checkpoint; a fused file is used as it is with a config whose backbone has '
            f'deploy=True (the deploy_config.py that export wrote next to it).')
    check_state_dict(model, state_dict, source=f'Checkpoint {path}')
    model.load_state_dict(state_dict, strict=True)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def default_input_size(cfg, scope: str) -> tuple[int, int]:
    """The (H, W) the config tests at: the segmentation crop / preprocessor size, or the size
    of a fixed-size ``Resize`` in the test pipeline."""
    size = cfg.model.get('data_preprocessor', {}).get('size') or cfg.get('crop_size')
    if scope == 'mmseg' and size:
        return int(size[0]), int(size[1])
    pipeline = cfg.get('test_pipeline') or cfg.get('test_dataloader', {}).get(
        'dataset', {}).get('pipeline', [])
    for step in pipeline:
        if step.get('type') == 'Resize' and not step.get('keep_ratio', False) and step.get(
                'scale'):
            scale = step['scale']
            scale = (scale, scale) if isinstance(scale, int) else scale
            return int(scale[1]), int(scale[0])  # mmcv scales are (w, h)
    raise ExportError('Cannot tell the input size from the config (no crop_size and no '
                      'fixed-size Resize in the test pipeline): pass --input-size H W.')


# --------------------------------------------------------------------------------------------
# Inputs and comparisons
# --------------------------------------------------------------------------------------------
def make_image(size: Sequence[int], seed: int = 0) -> Tensor:
    """A reproducible test image: 1x3xHxW float in 0..255, channels as loaded (BGR).

    Smooth blobs plus noise, so that activations look like those of a photo rather than of
    white noise.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    blobs = F.interpolate(torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g),
                          size=(h, w), mode='bilinear', align_corners=False)
    image = 0.8 * blobs + 0.2 * torch.rand(1, 3, h, w, generator=g)
    return (image * 255).round()


def preprocess(model: nn.Module, scope: str, image: Tensor) -> tuple[Tensor, list]:
    """Run ``image`` through the model's own data preprocessor; returns inputs and data
    samples for ``model.predict``."""
    h, w = image.shape[-2:]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=meta)
    else:
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=meta)
    data = model.data_preprocessor(dict(inputs=[image[0]], data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


def raw_outputs(model: nn.Module, inputs: Tensor) -> list[Tensor]:
    """The network's outputs before post-processing (detector head maps, segmentor logits)."""
    with torch.no_grad():
        out = model._forward(inputs)
    flat = []

    def collect(x):
        if isinstance(x, Tensor):
            flat.append(x)
        elif isinstance(x, (list, tuple)):
            for y in x:
                collect(y)
    collect(out)
    return flat


@dataclass
class Agreement:
    """How far ``actual`` outputs are from ``expected`` ones."""
    max_abs: float
    max_rel: float  # worst over tensors of max |a - e| / max |e|
    normwise: float  # worst over tensors of ||a - e|| / ||e||
    tensors: int
    rtol: float = RTOL

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.rtol and self.normwise <= self.rtol

    def __str__(self) -> str:
        return (f'max abs diff {self.max_abs:.2e}, max rel diff {self.max_rel:.2e} '
                f'(normwise {self.normwise:.2e}) over {self.tensors} output tensors, '
                f'tolerance {self.rtol:.1e}: {"OK" if self.ok else "MISMATCH"}')


def compare(actual: Sequence[Tensor], expected: Sequence[Tensor],
            rtol: float = RTOL) -> Agreement:
    """Compare two lists of output tensors, each relative to its own scale."""
    if len(actual) != len(expected):
        raise ExportError(f'The models give {len(actual)} and {len(expected)} output tensors; '
                          f'they are not the same network.')
    max_abs = max_rel = normwise = 0.0
    for a, e in zip(actual, expected):
        a, e = torch.as_tensor(a).double(), torch.as_tensor(e).double()
        if a.shape != e.shape:
            raise ExportError(f'Output shapes differ: {tuple(a.shape)} vs {tuple(e.shape)}.')
        if e.numel() == 0:
            continue
        diff = (a - e).abs()
        tiny = torch.finfo(torch.float32).tiny
        max_abs = max(max_abs, diff.max().item())
        max_rel = max(max_rel, diff.max().item() / max(e.abs().max().item(), tiny))
        normwise = max(normwise, diff.norm().item() / max(e.norm().item(), tiny))
    return Agreement(max_abs, max_rel, normwise, len(expected), rtol)


def float_tolerance(model: nn.Module, inputs: Tensor, outputs: Sequence[Tensor],
                    rtol: float = RTOL) -> tuple[float, float]:
    """The tolerance for comparing another float32 rendering of ``model`` with ``outputs``.

    Some networks amplify float32 rounding more than others (deep heads on random-looking
    weights by 1e-3 and more), so a fixed tolerance is either too loose for one or too tight for
    another. We measure the model's own float32 error against a float64 copy of it and allow
    8x that (the fused model adds the rounding of its fused weights to that of its
    activations; both are of that size), and never less than ``rtol``.

    Returns:
        The tolerance and the measured float32 error (relative, as :class:`Agreement`).
    """
    exact = raw_outputs(copy.deepcopy(model).double(), inputs.double())
    own = compare(outputs, exact)
    noise = max(own.max_rel, own.normwise)
    return max(rtol, 8 * noise), noise


# --------------------------------------------------------------------------------------------
# NMS as an exportable custom op
# --------------------------------------------------------------------------------------------
@torch.library.custom_op('mobileone_dense::nms', mutates_args=())
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
        max_output: int) -> Tensor:
    """Indices of the boxes kept by NMS, by decreasing score (mmcv's NMS, IoU without +1).

    Boxes with ``score <= score_threshold`` are dropped first; at most ``max_output`` are kept.
    In ONNX this is ``NonMaxSuppression`` (see :func:`_nms_onnx`).
    """
    from mmcv.ops import nms as mmcv_nms
    if boxes.numel() == 0:
        return boxes.new_zeros((0, ), dtype=torch.long)
    _, keep = mmcv_nms(boxes, scores, iou_threshold, score_threshold=score_threshold,
                       max_num=max_output)
    return keep.long()


@nms.register_fake
def _nms_fake(boxes, scores, iou_threshold, score_threshold, max_output):
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, ), dtype=torch.long)


def _nms_onnx(boxes, scores, iou_threshold: float, score_threshold: float, max_output: int):
    from onnxscript import opset18 as op
    selected = op.NonMaxSuppression(
        op.Unsqueeze(boxes, [0]), op.Unsqueeze(scores, [0, 1]),
        op.Constant(value_ints=[max_output]), op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]))
    return op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])  # (batch, class, box) -> box


# --------------------------------------------------------------------------------------------
# Export wrappers: raw image in, final predictions out
# --------------------------------------------------------------------------------------------
class _Normalize(nn.Module):
    """The data preprocessor's channel swap and normalization, as graph ops."""

    def __init__(self, data_preprocessor: nn.Module) -> None:
        super().__init__()
        # mmdet's DetDataPreprocessor (mmengine) and mmseg's SegDataPreProcessor name it apart.
        self.swap = bool(getattr(data_preprocessor, '_channel_conversion', False)
                         or getattr(data_preprocessor, 'channel_conversion', False))
        enabled = getattr(data_preprocessor, '_enable_normalize', False)
        mean = data_preprocessor.mean if enabled else torch.zeros(3, 1, 1)
        std = data_preprocessor.std if enabled else torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.detach().clone().view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', std.detach().clone().view(1, -1, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if self.swap:
            image = image.flip(1)
        return (image - self.mean) / self.std


class DetectorExport(nn.Module):
    """A single-stage anchor detector (SSDLite) with mmdet's test-time post-processing.

    Input ``image``: float32 ``1x3xHxW``, 0..255, channels as mmcv loads them (BGR), already
    resized to the export size. Outputs ``boxes`` (``Kx4``, x1 y1 x2 y2 in input pixels),
    ``scores`` (``K``) and ``labels`` (``K``, int64), by decreasing score, ``K <= max_per_img``.

    The steps are mmdet's ``BaseDenseHead._predict_by_feat_single`` with static shapes: per
    level the ``nms_pre`` best (anchor, class) scores, box decoding with clipping, the score
    threshold and ``min_bbox_size``, class-wise NMS (boxes offset by class, as mmcv's
    ``batched_nms``) **inside the graph**, and ``max_per_img``.
    """

    def __init__(self, detector: nn.Module, input_size: Sequence[int]) -> None:
        super().__init__()
        from mmdet.models.detectors import SingleStageDetector
        from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
        head = getattr(detector, 'bbox_head', None)
        if not isinstance(detector, SingleStageDetector) or head is None:
            raise ExportError(f'ONNX export handles single-stage detectors (SSDLite); '
                              f'{type(detector).__name__} is not one: export without --onnx.')
        if not isinstance(head.bbox_coder, DeltaXYWHBBoxCoder):
            raise ExportError(f'ONNX export decodes DeltaXYWHBBoxCoder boxes, the head uses '
                              f'{type(head.bbox_coder).__name__}: export without --onnx.')
        cfg = head.test_cfg
        nms_cfg = dict(cfg.get('nms', {}))
        if nms_cfg.get('type', 'nms') != 'nms' or nms_cfg.get('class_agnostic', False):
            raise ExportError(f'ONNX export supports class-wise hard NMS, the config asks for '
                              f'{nms_cfg}: set model.test_cfg.nms=dict(type="nms", '
                              f'iou_threshold=...).')
        self.detector = detector
        self.normalize = _Normalize(detector.data_preprocessor)
        self.input_size = tuple(int(s) for s in input_size)
        self.num_classes = head.num_classes
        self.sigmoid = bool(head.use_sigmoid_cls)
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.score_thr = float(cfg.get('score_thr', 0.0))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.iou_threshold = float(nms_cfg.get('iou_threshold', 0.5))
        self.max_per_img = int(cfg.get('max_per_img', 100))
        with torch.no_grad():
            dummy = torch.zeros(1, 3, *self.input_size)
            cls_scores, _ = head(detector.extract_feat(dummy))
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        priors = head.prior_generator.grid_priors(sizes, device='cpu')
        for i, p in enumerate(priors):
            self.register_buffer(f'priors{i}', p.clone(), persistent=False)
        self.num_levels = len(priors)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
        head, coder = self.detector.bbox_head, self.detector.bbox_head.bbox_coder
        cls_scores, bbox_preds = head(self.detector.extract_feat(self.normalize(image)))
        all_scores, all_labels, all_deltas, all_priors = [], [], [], []
        for level in range(self.num_levels):
            logits = cls_scores[level][0].permute(1, 2, 0).reshape(-1, head.cls_out_channels)
            deltas = bbox_preds[level][0].permute(1, 2, 0).reshape(-1, 4)
            scores = logits.sigmoid() if self.sigmoid else logits.softmax(-1)[:, :-1]
            flat = scores.reshape(-1)
            k = flat.numel() if self.nms_pre <= 0 else min(self.nms_pre, flat.numel())
            top, idx = flat.topk(k)
            anchor = idx // self.num_classes
            all_scores.append(top)
            all_labels.append(idx % self.num_classes)
            all_deltas.append(deltas[anchor])
            all_priors.append(getattr(self, f'priors{level}')[anchor])
        scores, labels = torch.cat(all_scores), torch.cat(all_labels)
        boxes = delta2bbox(torch.cat(all_priors), torch.cat(all_deltas), coder.means,
                           coder.stds, max_shape=self.input_size, clip_border=coder.clip_border,
                           add_ctr_clamp=coder.add_ctr_clamp, ctr_clamp=coder.ctr_clamp)
        valid = scores > self.score_thr
        if self.min_bbox_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = valid & (wh[:, 0] > self.min_bbox_size) & (wh[:, 1] > self.min_bbox_size)
        # Class-wise NMS as mmcv's batched_nms: offset each class beyond the largest coordinate
        # of the candidates.
        max_coordinate = torch.where(valid[:, None], boxes, torch.zeros_like(boxes)).max()
        offsets = labels.to(boxes) * (max_coordinate + 1)
        nms_scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
        keep = torch.ops.mobileone_dense.nms(boxes + offsets[:, None], nms_scores,
                                             self.iou_threshold, self.score_thr,
                                             self.max_per_img)
        return boxes[keep], scores[keep], labels[keep]


class SegmentorExport(nn.Module):
    """An encoder-decoder segmentor, whole-image inference.

    Input ``image`` as for :class:`DetectorExport`. Outputs ``seg_logits`` (``1xCxHxW``, the
    decode head's logits resized to the input, as mmseg's ``predict``) and ``seg_map``
    (``1xHxW`` int64 class indices: argmax, or the sigmoid threshold of a one-channel head).
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        if not hasattr(segmentor, 'decode_head') or not hasattr(segmentor, 'extract_feat'):
            raise ExportError(f'ONNX export handles encoder-decoder segmentors; '
                              f'{type(segmentor).__name__} is not one: export without --onnx.')
        self.segmentor = segmentor
        self.normalize = _Normalize(segmentor.data_preprocessor)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        from mmseg.models.utils import resize
        head = self.segmentor.decode_head
        logits = head.forward(self.segmentor.extract_feat(self.normalize(image)))
        logits = resize(logits, size=image.shape[2:], mode='bilinear',
                        align_corners=head.align_corners)
        if logits.shape[1] > 1:
            seg_map = logits.argmax(dim=1)
        else:
            seg_map = (logits.sigmoid() > head.threshold)[:, 0].long()
        return logits, seg_map


def export_wrapper(model: nn.Module, scope: str, input_size: Sequence[int]) -> nn.Module:
    wrapper = DetectorExport(model, input_size) if scope == 'mmdet' else SegmentorExport(model)
    wrapper.eval()
    return wrapper


OUTPUT_NAMES = {'mmdet': ['boxes', 'scores', 'labels'], 'mmseg': ['seg_logits', 'seg_map']}


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines and its notes about torchvision ops we do not
    use (torchvision is not installed)."""
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'torch.export', 'torch._export')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(wrapper: nn.Module, image: Tensor, path: str | Path,
                output_names: Optional[Sequence[str]] = None) -> Path:
    """Write ``wrapper`` as a single-file ONNX model (fixed input size, batch 1)."""
    path = Path(path)
    try:
        import onnxscript  # noqa: F401  (the exporter's translation library)
    except ImportError:
        raise ExportError('ONNX export needs the onnx, onnxscript and onnxruntime packages: '
                          'pip install -e ".[test]" (or pip install onnx onnxscript '
                          'onnxruntime).') from None
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            wrapper, (image, ), dynamo=True, input_names=['image'],
            output_names=list(output_names) if output_names else None,
            opset_version=ONNX_OPSET, verbose=False,
            custom_translation_table={torch.ops.mobileone_dense.nms.default: _nms_onnx})
        program.save(str(path), external_data=False)
    return path


def ort_session(path: str | Path, threads: Optional[int] = None, spinning: bool = False,
                shared_pool: bool = False):
    """An ONNX Runtime CPU session with all graph optimizations.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (None: ONNX Runtime's default, one per core).
        spinning: Let idle worker threads spin; off, so that the session does not steal the
            cores of PyTorch code running between its calls.
        shared_pool: Run on the process-wide thread pool instead of a pool of the session's
            own; ``threads`` and ``spinning`` are then the pool's (see
            :func:`ort_use_shared_pool`, which must come before the first session).
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if shared_pool:
        options.use_per_session_threads = False
    else:
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '1' if spinning else '0')
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    except Exception as e:
        if shared_pool and 'GlobalThreadPools' in str(e):
            raise RuntimeError('ONNX Runtime has no shared thread pool in this process: call '
                               'ort_use_shared_pool() before its first session.') from None
        raise


def ort_use_shared_pool(threads: int) -> None:
    """Give the process one ONNX Runtime thread pool (``threads`` intra-op workers, spinning
    between runs, ONNX Runtime's default) for the sessions made with ``shared_pool=True``.

    A process that serves several models wants this: with a pool per session, the workers of
    the session that ran last keep spinning on the cores while the next one runs. It must be
    called before the process makes its first session.
    """
    import onnxruntime as ort
    ort.set_global_thread_pool_sizes(threads, 1)


# --------------------------------------------------------------------------------------------
# Agreement of final predictions
# --------------------------------------------------------------------------------------------
def match_detections(actual: Sequence, expected: Sequence, box_atol: float = 1e-2) -> dict:
    """Pair detections of two runs (boxes, scores, labels, by decreasing score).

    Each expected detection is paired with the unused actual one of the same label whose box
    is nearest (L-inf); a pair counts when the boxes are within ``box_atol`` pixels.
    """
    a_boxes, a_scores, a_labels = (torch.as_tensor(x) for x in actual)
    e_boxes, e_scores, e_labels = (torch.as_tensor(x) for x in expected)
    used = torch.zeros(len(a_boxes), dtype=torch.bool)
    matched, box_diff, score_diff = 0, 0.0, 0.0
    for box, score, label in zip(e_boxes, e_scores, e_labels):
        candidates = (~used) & (a_labels == label)
        if not candidates.any():
            continue
        dist = (a_boxes - box).abs().amax(dim=1).masked_fill(~candidates, math.inf)
        j = int(dist.argmin())
        if dist[j] <= box_atol:
            used[j] = True
            matched += 1
            box_diff = max(box_diff, float(dist[j]))
            score_diff = max(score_diff, float((a_scores[j] - score).abs()))
    return dict(expected=len(e_boxes), actual=len(a_boxes), matched=matched,
                max_box_diff=box_diff, max_score_diff=score_diff,
                ok=matched == len(e_boxes) == len(a_boxes))


def describe_detections(m: dict) -> str:
    return (f'{m["matched"]} of {m["expected"]} detections matched ({m["actual"]} found), '
            f'max box diff {m["max_box_diff"]:.2e} px, max score diff '
            f'{m["max_score_diff"]:.2e}: {"OK" if m["ok"] else "MISMATCH"}')


def torch_predictions(model: nn.Module, scope: str, image: Tensor) -> list[Tensor]:
    """mmdet's / mmseg's own ``predict`` on ``image`` (no rescaling), as ONNX outputs."""
    inputs, samples = preprocess(model, scope, image)
    with torch.no_grad():
        result = model.predict(inputs, samples)[0]
    if scope == 'mmdet':
        pred = result.pred_instances
        return [pred.bboxes, pred.scores, pred.labels]
    return [result.seg_logits.data[None], result.pred_sem_seg.data.long()]


# --------------------------------------------------------------------------------------------
# The whole export
# --------------------------------------------------------------------------------------------
DEPLOY_CONFIG = """\
# Deploy config written by tools/export.py: the training config with every MobileOne block
# fused (deploy=True) and no pretrained init. It loads fused.pth strictly, e.g.
#   python tools/test.py {dir}/deploy_config.py {dir}/fused.pth
_base_ = './train_config.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
"""


def export(config: str | Path, checkpoint: str | Path, out_dir: str | Path,
           onnx: bool = False, input_size: Optional[Sequence[int]] = None,
           cfg_options: Optional[dict] = None, rtol: float = RTOL, log=print) -> dict:
    """Fuse a trained model and write ``fused.pth``, ``deploy_config.py`` (and ``model.onnx``).

    Args:
        config: The training config.
        checkpoint: The train-time checkpoint (mmengine's, with ``state_dict`` and ``meta``).
        out_dir: Where the files go (created).
        onnx: Also export and check ``model.onnx``.
        input_size: (H, W) of the check input and of the ONNX model; default: the config's.
        cfg_options: Overrides of the config, as ``--cfg-options``.
        rtol: Smallest tolerance of the fused-vs-train-time and ONNX-vs-PyTorch checks (a
            model that amplifies float32 rounding more gets more, see
            :func:`float_tolerance`).
        log: Where progress lines go.

    Returns:
        What was written and measured (paths, agreements).

    Raises:
        ExportError, CheckpointMismatchError: With one sentence naming the problem and the fix.
    """
    cfg = load_config(config, cfg_options)
    scope = task_of(cfg)
    size = tuple(input_size) if input_size else default_input_size(cfg, scope)
    if len(size) != 2 or min(size) < 32:
        raise ExportError(f'--input-size must be two numbers H W of at least 32, got {size}.')
    model = build_model(cfg)
    if not any(type(m).__name__ == 'MobileOneBlock' for m in model.modules()):
        raise ExportError(f'{config} builds no MobileOne block, so there is nothing to fuse: '
                          f'export a config with a MobileOne backbone.')
    meta = load_train_checkpoint(model, checkpoint)
    log(f'loaded the train-time checkpoint {checkpoint} into {type(model).__name__} '
        f'({TASKS[scope]}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params)')

    fused = reparameterize_model(model)
    image = make_image(size)
    inputs, _ = preprocess(model, scope, image)
    expected = raw_outputs(model, inputs)
    tol, noise = float_tolerance(model, inputs, expected, rtol)
    agreement = compare(raw_outputs(fused, inputs), expected, tol)
    log(f'fused vs train-time on a {size[0]}x{size[1]} input: {agreement}')
    log(f'  (tolerance: the larger of {rtol:.1e} and 8x the float32 rounding error of the '
        f'train-time model itself, {noise:.1e} against float64)')
    if not agreement.ok:
        raise ExportError(
            f'The fused model differs from the train-time model beyond float tolerance '
            f'(max rel diff {agreement.max_rel:.2e}, normwise {agreement.normwise:.2e} > '
            f'{tol:.1e}), so nothing was written: the checkpoint or a block is broken (check '
            f'that its BN running statistics are finite and that the config matches the '
            f'checkpoint).')
    fused_sd = fused.state_dict()
    report = dict(task=TASKS[scope], input_size=size, fused=vars(agreement), float32_error=noise,
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
        deploy_agreement = compare(raw_outputs(deploy_model, inputs), expected, tol)
        if not deploy_agreement.ok:
            raise ExportError(f'The model of deploy_config.py with the fused weights differs '
                              f'from the train-time model ({deploy_agreement}); nothing was '
                              f'written.')
        meta = dict(meta)
        meta['cfg'] = deploy_cfg.pretty_text  # inferencers given only fused.pth build this
        meta['mobileone_dense_export'] = dict(
            train_checkpoint=str(checkpoint), train_config=str(config),
            fused_max_rel_diff=agreement.max_rel, input_size=list(size))
        if 'dataset_meta' not in meta:
            log('note: the checkpoint has no dataset_meta (class names); inferencers will '
                'fall back to the dataset defaults')
        torch.save(dict(meta=meta, state_dict=fused_sd), tmp / 'fused.pth')

        if onnx:
            wrapper = export_wrapper(deploy_model, scope, size)
            names = OUTPUT_NAMES[scope]
            onnx_path = export_onnx(wrapper, image, tmp / 'model.onnx', names)
            session = ort_session(onnx_path)
            ort_out = session.run(None, {'image': image.numpy()})
            reference = torch_predictions(deploy_model, scope, image)
            with torch.no_grad():
                eager = wrapper(image)
            if scope == 'mmdet':
                box_atol = max(1e-2, tol * max(size))
                graph = match_detections(eager, reference, box_atol)
                log(f'export graph in PyTorch vs mmdet predict: {describe_detections(graph)}')
                onnx_agreement = match_detections(ort_out, reference, box_atol)
                log(f'ONNX Runtime vs PyTorch (mmdet predict): '
                    f'{describe_detections(onnx_agreement)}; NMS is inside the graph')
                ok = graph['ok'] and onnx_agreement['ok']
            else:
                logits = compare([ort_out[0]], [reference[0]], tol)
                pixels = float((torch.as_tensor(ort_out[1]) == reference[1]).double().mean())
                onnx_agreement = dict(logits=vars(logits), seg_map_agreement=pixels)
                log(f'ONNX Runtime vs PyTorch (mmseg predict): logits {logits}; class map '
                    f'{100 * pixels:.3f}% of pixels equal')
                ok = logits.ok and pixels >= 0.999
            report['onnx'] = onnx_agreement
            if not ok:
                raise ExportError('ONNX Runtime disagrees with PyTorch beyond tolerance (see '
                                  'above), so nothing was written: report this with the config.')
        out_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for name in ('fused.pth', 'train_config.py', 'deploy_config.py', 'model.onnx'):
            if (tmp / name).exists():
                shutil.move(str(tmp / name), str(out_dir / name))
                written[name] = str(out_dir / name)
    report['written'] = written
    for path in written.values():
        log(f'wrote {path}')
    return report
