"""The exported graphs' pieces: the preprocessor's normalisation, non-maximum suppression as an
exportable op, and the wrappers that turn a detector or segmentor into a graph from raw image
to final predictions (ONNX), or to the network's outputs that every runtime runs (LiteRT,
Core ML) plus the detector's post-processing in PyTorch.

Class-wise non-maximum suppression is a small custom op (:mod:`.nms`) that becomes ONNX's
``NonMaxSuppression`` in the graph, so an exported detector contains its NMS.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from .nms import class_nms  # noqa: F401  (registers torch.ops.mobileone_dense.class_nms)


class Normalize(nn.Module):
    """The data preprocessor's channel swap and normalization, as graph ops.

    ``std`` is None once :func:`fold_normalization` has moved the division into the first
    convolution: then only ``image - mean`` is left."""

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
        image = image - self.mean
        return image if self.std is None else image / self.std


def fold_normalization(network: nn.Module, image: Tensor) -> nn.Module:
    """``network`` with the BGR->RGB swap and the division by ``std`` of its
    :class:`Normalize` folded into the first convolution (its input channels reversed and
    divided by ``std``, the mean reordered to match): the same function with ``image - mean``
    left of the normalisation.

    Both ops pass through the convolution's zero padding (a reordered or rescaled zero is zero);
    the mean does not (the padding is zero after the subtraction), so it stays. What the fold
    saves, in LiteRT: the channel reversal runs outside XNNPACK (``REVERSE_V2``, ~0.2 ms on a
    224x224 image, a tenth of MobileOne-S0's INT8 backbone), and the multiply was a full pass
    over the float image before the INT8 model's input quantization (MobileOne-S0's INT8
    backbone at 224 ran 1.16x faster without it).

    Returns a folded deep copy, or ``network`` itself when there is nothing to fold or the fold
    does not hold: no :class:`Normalize` that swaps or divides, the normalised image feeds
    anything but one ungrouped 3-channel ``Conv2d``, or the outputs on ``image`` (a
    ``1x3xHxW`` 0..255 image) differ beyond float rounding (:data:`~.numerics.RTOL_CAP`).
    """
    from .numerics import RTOL_CAP, compare, flatten
    found = [name for name, m in network.named_modules() if isinstance(m, Normalize)]
    if len(found) != 1:
        return network
    normalize = network.get_submodule(found[0])
    if not normalize.swap and normalize.std is None:
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
    handles = [normalize.register_forward_hook(on_normalized)]
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
    order = (lambda t: t.flip(1)) if normalize.swap else (lambda t: t)  # noqa: E731
    with torch.no_grad():
        weight = order(conv.weight)
        if normalize.std is not None:
            weight = weight / order(normalize.std)
        conv.weight.copy_(weight)
    normalize.mean = order(normalize.mean)
    normalize.swap = False
    normalize.std = None
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
        # NCHW -> (anchor, channel) with the batch axis kept through the permute: a converter
        # that runs the graph in NHWC then drops the permute, where ``c[0].permute(1, 2, 0)``
        # left LiteRT's INT8 graph two transposes per head output (20 for SSDLite's six levels)
        logits = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
                            for c in cls_scores])
        deltas = torch.cat([b.permute(0, 2, 3, 1).reshape(-1, 4) for b in bbox_preds])
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
    (:func:`~.nms.class_nms`, as mmcv's ``batched_nms``) and ``max_per_img``. Outputs ``boxes``
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
        head = 2 * self.max_per_img
        if (not torch.compiler.is_exporting() and head > 0
                and (self.nms_pre <= 0 or head < self.nms_pre)):
            # The best candidates first (exact; see _select); an exported graph has no branch.
            detections = self._select(boxes, scores, head)
            if detections is not None:
                return detections
        return self._select(boxes, scores)

    def _select(self, boxes: Tensor, scores: Tensor, head: Optional[int] = None
                ) -> Optional[tuple[Tensor, Tensor, Tensor]]:
        """The detections; with ``head``, from the candidates that score above the ``head``-th
        best alone, or None when those cannot decide.

        A box's fate in greedy NMS depends on the higher-scoring boxes of its class only, so
        NMS keeps among the candidates above a score ``s`` exactly the boxes the whole run
        keeps above ``s``: if they are ``max_per_img`` or more (or if every candidate is
        above ``s``), they hold the answer. And every candidate above the ``head``-th best
        score is among its level's ``head`` best, so the per-level top-k can stop at ``head``
        too. At full load (score threshold 0, 5,480 candidates over 80 classes) this spares
        most of the top-k and ~90% of NMS; else the whole selection follows.
        """
        num_classes = scores.shape[1]
        per_level = self.nms_pre if head is None else head
        flat = scores.reshape(-1)  # anchor-major: (anchor, class) -> anchor * C + class
        picked_scores, picked = [], []
        start = 0
        for count in self.level_anchors:
            level = flat[start * num_classes:(start + count) * num_classes]
            k = level.numel() if per_level <= 0 else min(per_level, level.numel())
            top, idx = level.topk(k)
            picked_scores.append(top)
            picked.append(idx + start * num_classes)
            start += count
        top, idx = torch.cat(picked_scores), torch.cat(picked)
        anchors = torch.div(idx, num_classes, rounding_mode='floor')
        labels = idx - anchors * num_classes
        valid = top > self.score_thr
        if self.min_bbox_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            large = (wh[:, 0] > self.min_bbox_size) & (wh[:, 1] > self.min_bbox_size)
            valid = valid & large[anchors]
        floor = None
        if head is not None and top.numel() >= head:
            floor = top.topk(head).values[-1]
            valid = valid & (top > floor)
        candidates = torch.where(valid, top, torch.full_like(top, -1.0))
        nms_scores, kept = self._nms(boxes, candidates, labels, anchors)
        if floor is not None and floor > self.score_thr and len(kept) < self.max_per_img:
            return None  # some of the answer may score below the floor
        labels, anchors = kept[:, 0], kept[:, 1]
        return boxes[anchors], nms_scores[labels, anchors], labels

    def _nms(self, boxes: Tensor, candidates: Tensor, labels: Tensor, anchors: Tensor
             ) -> tuple[Tensor, Tensor]:
        """Class-wise NMS of the candidates (``-1``: none). Its input is every anchor's box and
        per class the scores of the candidates' anchors (-1 elsewhere); returns those scores
        (``CxA``) and the kept ``(class, anchor)`` pairs."""
        num_anchors = boxes.shape[0]
        nms_scores = torch.full((self.num_classes * num_anchors, ), -1.0,
                                dtype=candidates.dtype)
        nms_scores = nms_scores.scatter(0, labels * num_anchors + anchors, candidates)
        nms_scores = nms_scores.view(self.num_classes, num_anchors)
        kept = torch.ops.mobileone_dense.class_nms(boxes, nms_scores, self.iou_threshold,
                                                   self.score_thr, self.max_per_img)
        return nms_scores, kept


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
