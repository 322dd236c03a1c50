"""The exported graphs' pieces: the preprocessor's normalisation, non-maximum suppression as an
exportable op, and the wrappers that turn a detector or segmentor into a graph from raw image
to final predictions (ONNX), or to the network's outputs that every runtime runs (LiteRT,
Core ML) plus the detector's post-processing in PyTorch.

Class-wise non-maximum suppression is a small custom op (``mobileone_dense::class_nms``) that
runs mmcv's NMS kernel per class in PyTorch and becomes ONNX's ``NonMaxSuppression`` in the
graph (:func:`class_nms_onnx`), so an exported detector contains its NMS.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError


def _nms_kernel():
    """mmcv's compiled NMS kernel, called directly: ``mmcv.ops.nms`` wraps the same call in an
    argument-deprecation check that costs ~0.1 ms per call (inspect.getfullargspec), more than
    the kernel itself on one class's candidates."""
    from mmcv.utils import ext_loader
    return ext_loader.load_ext('_ext', ['nms']).nms


@torch.library.custom_op('mobileone_dense::class_nms', mutates_args=())
def class_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float,
              score_threshold: float, max_output: int) -> Tensor:
    """Indices of the boxes kept by class-wise NMS, by decreasing score (as mmcv's
    ``batched_nms``: boxes of different classes never suppress each other; IoU without +1).

    Boxes with ``score <= score_threshold`` are dropped first; at most ``max_output`` are kept.
    Each class runs its own NMS (mmcv's kernel), so the work grows with the candidates per
    class, not with all of them: with 80 classes that is ~10x less than one NMS over boxes
    offset by class, the form it takes in ONNX (:func:`class_nms_onnx`).
    """
    candidates = (scores > score_threshold).nonzero().squeeze(1)
    if candidates.numel() == 0:
        return boxes.new_zeros((0, ), dtype=torch.long)
    by_class = candidates[labels[candidates].argsort(stable=True)]
    _, counts = torch.unique_consecutive(labels[by_class], return_counts=True)
    class_boxes, class_scores = boxes[by_class].contiguous(), scores[by_class].contiguous()
    kernel = _nms_kernel()
    keep, start = [], 0
    for count in counts.tolist():
        end = start + count
        kept = kernel(class_boxes[start:end], class_scores[start:end],
                      iou_threshold=float(iou_threshold), offset=0)
        keep.append(kept + start)
        start = end
    keep = by_class[torch.cat(keep)]
    order = scores[keep].argsort(descending=True, stable=True)
    return keep[order[:max_output]]


@class_nms.register_fake
def _class_nms_fake(boxes, scores, labels, iou_threshold, score_threshold, max_output):
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, ), dtype=torch.long)


def class_nms_onnx(boxes, scores, labels, iou_threshold: float, score_threshold: float,
                   max_output: int):
    """:func:`class_nms` as ONNX ops: boxes offset by class beyond the largest coordinate (as
    mmcv's ``batched_nms``), then one ``NonMaxSuppression``."""
    from onnxscript import opset18 as op
    step = op.Add(op.ReduceMax(boxes, keepdims=0), op.Constant(value_float=1.0))
    offsets = op.Mul(op.Cast(labels, to=1), step)  # to=1: float32
    shifted = op.Add(boxes, op.Unsqueeze(offsets, [1]))
    selected = op.NonMaxSuppression(
        op.Unsqueeze(shifted, [0]), op.Unsqueeze(scores, [0, 1]),
        op.Constant(value_ints=[max_output]), op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]))
    return op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])  # (batch, class, box) -> box


class Normalize(nn.Module):
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


def fold_channel_swap(network: nn.Module, image: Tensor) -> nn.Module:
    """``network`` with the BGR->RGB swap of its :class:`Normalize` folded into the first
    convolution (its input channels reversed, the mean and std reordered to match): the same
    function without the channel reversal op, which LiteRT runs outside XNNPACK (``REVERSE_V2``,
    ~0.2 ms on a 224x224 image, a tenth of MobileOne-S0's INT8 backbone) and ONNX as a gather.

    Returns a folded deep copy, or ``network`` itself when there is nothing to fold or the fold
    does not hold: no swapping ``Normalize``, the normalised image feeds anything but one
    ungrouped 3-channel ``Conv2d``, or the outputs on ``image`` (a ``1x3xHxW`` 0..255 image)
    differ beyond float rounding (:data:`~.numerics.RTOL_CAP`).
    """
    from .numerics import RTOL_CAP, compare, flatten
    found = [name for name, m in network.named_modules() if isinstance(m, Normalize)]
    if len(found) != 1 or not network.get_submodule(found[0]).swap:
        return network
    # One pass of the original network gives its outputs and the modules the normalised
    # image enters; only a foldable network is copied.
    consumers: list[str] = []
    normalized: dict[str, Tensor] = {}

    def on_normalized(module, inputs, output):
        normalized['image'] = output

    def on_input(name):
        def hook(module, inputs):
            if any(x is normalized.get('image') for x in inputs):
                consumers.append(name)
        return hook

    leaves = [(n, m) for n, m in network.named_modules() if not list(m.children())
              and not isinstance(m, Normalize)]
    handles = [network.get_submodule(found[0]).register_forward_hook(on_normalized)]
    handles += [m.register_forward_pre_hook(on_input(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            expected = [t for t in flatten(network(image)) if t.is_floating_point()]
    finally:
        for handle in handles:
            handle.remove()
    conv = network.get_submodule(consumers[0]) if len(consumers) == 1 else None
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.in_channels == 3):
        return network
    folded = copy.deepcopy(network).eval()
    conv, normalize = folded.get_submodule(consumers[0]), folded.get_submodule(found[0])
    with torch.no_grad():
        conv.weight.copy_(conv.weight.flip(1))
    normalize.swap = False
    normalize.mean = normalize.mean.flip(1)
    normalize.std = normalize.std.flip(1)
    with torch.no_grad():
        actual = [t for t in flatten(folded(image)) if t.is_floating_point()]
    return folded if compare(actual, expected, RTOL_CAP).ok else network


class NetworkCore(nn.Module):
    """Normalisation, backbone, neck and head up to the head's raw maps: the part of a network
    that INT8 export quantizes (:func:`~.litert.quantize_pt2e` replaces a wrapper's ``core``
    with its quantized graph); what follows it (box decoding, softmax, resize, argmax) stays
    float."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model = model
        self.normalize = Normalize(model.data_preprocessor)
        self.head = head

    def forward(self, image: Tensor):
        return getattr(self.model, self.head)(self.model.extract_feat(self.normalize(image)))


class DetectorNetwork(nn.Module):
    """A single-stage anchor detector (SSDLite) up to decoded boxes: what every runtime runs.

    Input ``image``: float32 ``1x3xHxW``, 0..255, channels as mmcv loads them (BGR), already
    resized to the export size. Outputs ``boxes`` (``1xAx4``, x1 y1 x2 y2 in input pixels,
    clipped, one per anchor of every level in mmdet's order) and ``scores`` (``1xAxC``: the
    softmax without the background column, or the sigmoid). :class:`DetectorPostprocess` turns
    them into detections.
    """

    def __init__(self, detector: nn.Module, input_size: Sequence[int]) -> None:
        super().__init__()
        from mmdet.models.detectors import SingleStageDetector
        from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
        head = getattr(detector, 'bbox_head', None)
        if not isinstance(detector, SingleStageDetector) or head is None:
            raise ExportError(f'Export handles single-stage detectors (SSDLite); '
                              f'{type(detector).__name__} is not one: export with no --format.')
        if not isinstance(head.bbox_coder, DeltaXYWHBBoxCoder):
            raise ExportError(f'Export decodes DeltaXYWHBBoxCoder boxes, the head uses '
                              f'{type(head.bbox_coder).__name__}: export with no --format.')
        self.core = NetworkCore(detector, 'bbox_head')
        self.input_size = tuple(int(s) for s in input_size)
        self.num_classes = head.num_classes
        self.cls_out_channels = head.cls_out_channels
        self.sigmoid = bool(head.use_sigmoid_cls)
        self.coder = head.bbox_coder
        with torch.no_grad():
            cls_scores, _ = self.core(torch.zeros(1, 3, *self.input_size))
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        priors = head.prior_generator.grid_priors(sizes, device='cpu')
        #: Anchors per level, in the order of the outputs.
        self.level_anchors = [len(p) for p in priors]
        self.register_buffer('priors', torch.cat(priors).clone(), persistent=False)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
        cls_scores, bbox_preds = self.core(image)
        logits = torch.cat([c[0].permute(1, 2, 0).reshape(-1, self.cls_out_channels)
                            for c in cls_scores])
        deltas = torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])
        scores = logits.sigmoid() if self.sigmoid else logits.softmax(-1)[:, :-1]
        coder = self.coder
        boxes = delta2bbox(self.priors, deltas, coder.means, coder.stds,
                           max_shape=self.input_size, clip_border=coder.clip_border,
                           add_ctr_clamp=coder.add_ctr_clamp, ctr_clamp=coder.ctr_clamp)
        return boxes[None], scores[None]


class DetectorPostprocess(nn.Module):
    """mmdet's test-time selection of :class:`DetectorNetwork`'s outputs, with static shapes.

    The steps of ``BaseDenseHead._predict_by_feat_single``: per level the ``nms_pre`` best
    (anchor, class) scores, the score threshold and ``min_bbox_size``, class-wise NMS
    (:func:`class_nms`, as mmcv's ``batched_nms``) and ``max_per_img``. Outputs ``boxes``
    (``Kx4``), ``scores`` (``K``) and ``labels`` (``K``, int64), by decreasing score. In ONNX the
    NMS is the graph's ``NonMaxSuppression``; runtimes without one (LiteRT, Core ML) run this
    module in PyTorch after the network.
    """

    def __init__(self, head: nn.Module, level_anchors: Sequence[int]) -> None:
        super().__init__()
        cfg = head.test_cfg
        nms_cfg = dict(cfg.get('nms', {}))
        if nms_cfg.get('type', 'nms') != 'nms' or nms_cfg.get('class_agnostic', False):
            raise ExportError(f'Export supports class-wise hard NMS, the config asks for '
                              f'{nms_cfg}: set model.test_cfg.nms=dict(type="nms", '
                              f'iou_threshold=...).')
        self.num_classes = head.num_classes
        self.level_anchors = [int(n) for n in level_anchors]
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.score_thr = float(cfg.get('score_thr', 0.0))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.iou_threshold = float(nms_cfg.get('iou_threshold', 0.5))
        self.max_per_img = int(cfg.get('max_per_img', 100))

    def forward(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        boxes, scores = boxes[0], scores[0]
        all_scores, all_labels, all_boxes = [], [], []
        start = 0
        for count in self.level_anchors:
            flat = scores[start:start + count].reshape(-1)
            k = flat.numel() if self.nms_pre <= 0 else min(self.nms_pre, flat.numel())
            top, idx = flat.topk(k)
            all_scores.append(top)
            all_labels.append(idx % self.num_classes)
            all_boxes.append(boxes[start:start + count][idx // self.num_classes])
            start += count
        scores, labels = torch.cat(all_scores), torch.cat(all_labels)
        boxes = torch.cat(all_boxes)
        valid = scores > self.score_thr
        if self.min_bbox_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = valid & (wh[:, 0] > self.min_bbox_size) & (wh[:, 1] > self.min_bbox_size)
        nms_scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
        keep = torch.ops.mobileone_dense.class_nms(boxes, nms_scores, labels,
                                                   self.iou_threshold, self.score_thr,
                                                   self.max_per_img)
        return boxes[keep], scores[keep], labels[keep]


class DetectorGraph(nn.Module):
    """:class:`DetectorNetwork` then :class:`DetectorPostprocess`: raw image to detections in
    one graph (the ONNX model, NMS inside)."""

    def __init__(self, detector: nn.Module, input_size: Sequence[int]) -> None:
        super().__init__()
        self.network = DetectorNetwork(detector, input_size)
        self.postprocess = DetectorPostprocess(detector.bbox_head, self.network.level_anchors)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.postprocess(*self.network(image))


class SegmentorGraph(nn.Module):
    """An encoder-decoder segmentor, whole-image inference.

    Input ``image`` as for :class:`DetectorGraph`. Outputs ``seg_logits`` (``1xCxHxW``, the
    decode head's logits resized to the input, as mmseg's ``predict``) and ``seg_map``
    (``1xHxW`` int64 class indices: argmax, or the sigmoid threshold of a one-channel head).
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        if not hasattr(segmentor, 'decode_head') or not hasattr(segmentor, 'extract_feat'):
            raise ExportError(f'Export handles encoder-decoder segmentors; '
                              f'{type(segmentor).__name__} is not one: export with no --format.')
        head = segmentor.decode_head
        self.core = NetworkCore(segmentor, 'decode_head')
        self.align_corners = head.align_corners
        self.threshold = getattr(head, 'threshold', None)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        from mmseg.models.utils import resize
        logits = resize(self.core(image), size=image.shape[2:], mode='bilinear',
                        align_corners=self.align_corners)
        if logits.shape[1] > 1:
            seg_map = logits.argmax(dim=1)
        else:
            seg_map = (logits.sigmoid() > self.threshold)[:, 0].long()
        return logits, seg_map
