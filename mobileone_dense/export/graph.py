"""The exported graphs' pieces: the preprocessor's normalisation, non-maximum suppression as an
exportable op, and the wrappers that turn a detector or segmentor into a graph from raw image
to final predictions (ONNX), or to the network's outputs that every runtime runs (LiteRT,
Core ML) plus the detector's post-processing in PyTorch.

Non-maximum suppression is a small custom op (``mobileone_dense::nms``) that runs mmcv's NMS in
PyTorch and becomes ONNX's ``NonMaxSuppression`` in the graph (:func:`nms_onnx`), so an exported
detector contains its NMS.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError


@torch.library.custom_op('mobileone_dense::nms', mutates_args=())
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
        max_output: int) -> Tensor:
    """Indices of the boxes kept by NMS, by decreasing score (mmcv's NMS, IoU without +1).

    Boxes with ``score <= score_threshold`` are dropped first; at most ``max_output`` are kept.
    In ONNX this is ``NonMaxSuppression`` (see :func:`nms_onnx`).
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


def nms_onnx(boxes, scores, iou_threshold: float, score_threshold: float, max_output: int):
    from onnxscript import opset18 as op
    selected = op.NonMaxSuppression(
        op.Unsqueeze(boxes, [0]), op.Unsqueeze(scores, [0, 1]),
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
    (anchor, class) scores, the score threshold and ``min_bbox_size``, class-wise NMS (boxes
    offset by class, as mmcv's ``batched_nms``) and ``max_per_img``. Outputs ``boxes``
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
        # Class-wise NMS as mmcv's batched_nms: offset each class beyond the largest coordinate
        # of the candidates.
        max_coordinate = torch.where(valid[:, None], boxes, torch.zeros_like(boxes)).max()
        offsets = labels.to(boxes) * (max_coordinate + 1)
        nms_scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
        keep = torch.ops.mobileone_dense.nms(boxes + offsets[:, None], nms_scores,
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
