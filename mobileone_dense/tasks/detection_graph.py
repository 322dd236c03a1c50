"""A single-stage detector as the graphs that export writes: :class:`DetectorNetwork` (raw image
to decoded boxes and class scores of every anchor: what every runtime runs),
:class:`DetectorPostprocess` (mmdet's test-time selection and class-wise NMS, with static
shapes) and :class:`DetectorGraph` (both: the ONNX model, NMS inside).

Class-wise NMS is a small custom op (:mod:`~mobileone_dense.export.nms`) that becomes ONNX's
``NonMaxSuppression`` in the graph.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..export.graph import NetworkCore
from ..export.nms import class_nms  # noqa: F401  (registers torch.ops.mobileone_dense.class_nms)


class DetectorNetwork(nn.Module):
    """A single-stage anchor detector (SSDLite) up to decoded boxes: what every runtime runs.

    Input ``image``: float32 ``1x3xHxW``, 0..255, channels as mmcv loads them (BGR), already
    resized to the export size. Outputs ``boxes`` (``1xAx4``, x1 y1 x2 y2 in input pixels,
    clipped, one per anchor of every level in mmdet's order) and ``scores`` (``1xAxC``: the
    softmax without the background column, or the sigmoid). :class:`DetectorPostprocess` turns
    them into detections. With ``app=True`` (the LiteRT files, which MediaPipe Tasks run) the
    image is RGB, as cameras and MediaPipe deliver it, and ``boxes`` are MediaPipe's raw
    detections: centre y, centre x, height, width as fractions of the input's sides (the order
    of its SSD decoder).
    """

    def __init__(self, detector: nn.Module, input_size: Sequence[int], app: bool = False) -> None:
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
        self.core = NetworkCore(detector, 'bbox_head', rgb_input=app)
        self.input_size = tuple(int(s) for s in input_size)
        self.app = app
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
        if self.app:  # MediaPipe's raw detections: centre y, x, height, width in [0, 1]
            h, w = self.input_size
            x1, y1, x2, y2 = boxes.unbind(-1)
            boxes = torch.stack([(y1 + y2) / (2 * h), (x1 + x2) / (2 * w), (y2 - y1) / h,
                                 (x2 - x1) / w], -1)
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
