"""Class-wise non-maximum suppression as one exportable op, ``mobileone_dense::class_nms``.

It has the form of ONNX's ``NonMaxSuppression`` with one score row per class: ``boxes``
(``Nx4``) and ``scores`` (``CxN``), each class suppressing among its own boxes only, as mmcv's
``batched_nms`` (what mmdet's dense heads run; IoU without +1, suppression where IoU exceeds
the threshold). A detector hands it every anchor's box and, per class, the scores of the
anchors its pre-selection picked (-1 elsewhere).

- In PyTorch it runs ONNX Runtime's ``NonMaxSuppression`` kernel on a one-node graph
  (:func:`_nms_onnxruntime`) when onnxruntime is installed, else mmcv's NMS kernel once per
  class (:func:`_nms_mmcv`). The two keep the same boxes (tests check both against
  ``batched_nms``). On SSDLite-S0's outputs at full load (score threshold 0, 5,480
  candidates over 80 classes, 2 threads, this repository's CPU) the first takes ~1.4 ms, the
  second ~5 ms: each mmcv call costs ~30 us before any box is compared, 80 times.
- In an ONNX graph it becomes that ``NonMaxSuppression`` node, then a ``TopK`` of the kept
  scores (:func:`class_nms_onnx`).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor


@torch.library.custom_op('mobileone_dense::class_nms', mutates_args=())
def class_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
              max_output: int) -> Tensor:
    """The ``(class, box)`` index pairs kept by class-wise NMS (``Kx2``, int64), by decreasing
    score (ties: the lower class first), at most ``max_output``.

    ``boxes``: ``Nx4`` x1 y1 x2 y2. ``scores``: ``CxN``; entries ``<= score_threshold`` are no
    candidates. Boxes of different classes never suppress each other.
    """
    empty = boxes.new_zeros((0, 2), dtype=torch.long)
    if max_output <= 0 or boxes.numel() == 0 or scores.numel() == 0:
        return empty
    boxes = boxes.float().contiguous()
    scores = scores.float().contiguous()
    session = _onnxruntime_session()
    pairs = (_nms_mmcv(boxes, scores, iou_threshold, score_threshold, max_output)
             if session is None else
             _nms_onnxruntime(session, boxes, scores, iou_threshold, score_threshold,
                              max_output))
    if pairs.numel() == 0:
        return empty
    kept = scores[pairs[:, 0], pairs[:, 1]]  # pairs come by class: a tie keeps that order
    return pairs[kept.argsort(descending=True, stable=True)[:max_output]]


@class_nms.register_fake
def _class_nms_fake(boxes, scores, iou_threshold, score_threshold, max_output):
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, 2), dtype=torch.long)


# --------------------------------------------------------------------------- ONNX Runtime
@functools.lru_cache(maxsize=None)
def _onnxruntime_session():
    """A one-thread ONNX Runtime session of a lone ``NonMaxSuppression`` node (thresholds and
    the per-class cap are inputs), or None without onnxruntime."""
    try:
        import onnxruntime  # noqa: F401  (the kernel's runtime)
        from onnx import TensorProto, helper
    except ImportError:
        return None
    from ..runtimes.onnxruntime import ort_session, ort_shared_pool_active
    inputs = [helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, 'N', 4]),
              helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 'C', 'N']),
              helper.make_tensor_value_info('max_output', TensorProto.INT64, [1]),
              helper.make_tensor_value_info('iou_threshold', TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info('score_threshold', TensorProto.FLOAT, [1])]
    node = helper.make_node('NonMaxSuppression', [i.name for i in inputs], ['selected'])
    graph = helper.make_graph(
        [node], 'class_nms', inputs,
        [helper.make_tensor_value_info('selected', TensorProto.INT64, ['K', 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    # One thread: the kernel runs on the calling thread, no pool to wake. A process that gave
    # ONNX Runtime a shared pool (the benchmarks) must put every session on it.
    return ort_session(model.SerializeToString(), threads=1,
                       shared_pool=ort_shared_pool_active())


def _nms_onnxruntime(session, boxes: Tensor, scores: Tensor, iou_threshold: float,
                     score_threshold: float, max_output: int) -> Tensor:
    """ONNX Runtime's kernel: per class, at most ``max_output`` boxes (no class can place
    more in the best ``max_output`` overall); returns ``(class, box)`` pairs."""
    selected, = session.run(None, {
        'boxes': boxes[None].numpy(), 'scores': scores[None].numpy(),
        'max_output': np.array([max_output], np.int64),
        'iou_threshold': np.array([iou_threshold], np.float32),
        'score_threshold': np.array([score_threshold], np.float32)})
    return torch.from_numpy(selected[:, 1:])


# --------------------------------------------------------------------------- mmcv
@functools.lru_cache(maxsize=None)
def _mmcv_kernel():
    """mmcv's compiled NMS kernel, called directly: ``mmcv.ops.nms`` wraps the same call in an
    argument-deprecation check that costs ~0.1 ms per call (inspect.getfullargspec), more than
    the kernel itself on one class's candidates."""
    from mmcv.utils import ext_loader
    return ext_loader.load_ext('_ext', ['nms']).nms


def _nms_mmcv(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
              max_output: int) -> Tensor:
    """mmcv's kernel on each class's candidates; returns ``(class, box)`` pairs."""
    pairs = (scores > score_threshold).nonzero()  # by class, then box
    if len(pairs) == 0:
        return pairs
    _, counts = torch.unique_consecutive(pairs[:, 0], return_counts=True)
    class_boxes = boxes[pairs[:, 1]].contiguous()
    class_scores = scores[pairs[:, 0], pairs[:, 1]].contiguous()
    kernel = _mmcv_kernel()
    keep, start = [], 0
    for count in counts.tolist():
        end = start + count
        kept = kernel(class_boxes[start:end], class_scores[start:end],
                      iou_threshold=float(iou_threshold), offset=0)
        keep.append(kept[:max_output] + start)
        start = end
    return pairs[torch.cat(keep)]


# --------------------------------------------------------------------------- ONNX graph
def class_nms_onnx(boxes, scores, iou_threshold: float, score_threshold: float,
                   max_output: int):
    """:func:`class_nms` as ONNX ops: ``NonMaxSuppression`` (per class), then the kept pairs
    by decreasing score (``TopK``, which puts the lower index, i.e. class, first among equal
    scores)."""
    from onnxscript import opset18 as op
    selected = op.NonMaxSuppression(
        op.Unsqueeze(boxes, [0]), op.Unsqueeze(scores, [0]),
        op.Constant(value_ints=[max_output]), op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]))
    pairs = op.Slice(selected, [1], [3], [1])  # (batch, class, box) -> (class, box)
    classes = op.Reshape(op.Slice(selected, [1], [2], [1]), [-1])
    box_ids = op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])
    flat = op.Add(op.Mul(classes, op.Shape(scores, start=1, end=2)), box_ids)
    kept = op.Gather(op.Reshape(scores, [-1]), flat)
    count = op.Min(op.Shape(kept), op.Constant(value_ints=[max_output]))
    _, order = op.TopK(kept, count, largest=1, sorted=1)
    return op.Gather(pairs, order, axis=0)
