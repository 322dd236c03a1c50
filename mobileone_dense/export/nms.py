"""Class-wise non-maximum suppression as one exportable op, ``mobileone_dense::class_nms``.

It has the form of ONNX's ``NonMaxSuppression`` with one score row per class: ``boxes``
(``Nx4``) and ``scores`` (``CxN``), each class suppressing among its own boxes only, as mmcv's
``batched_nms`` (what mmdet's dense heads run; IoU without +1, suppression where IoU exceeds
the threshold). A detector hands it every anchor's box and, per class, the scores of the
anchors its pre-selection picked (-1 elsewhere).

- In PyTorch it runs ONNX Runtime's ``NonMaxSuppression`` kernel on a one-node graph
  (:func:`_session`): one call for every class, where mmcv's kernel would take one call per
  class, each with its own overhead (tests check it against mmcv's ``batched_nms``).
- In an ONNX graph it becomes that ``NonMaxSuppression`` node, then a ``TopK`` of the kept
  scores (:func:`class_nms_onnx`).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from ..runtimes.onnxruntime import ort_session, ort_shared_pool_active


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
    selected, = _session().run(None, {
        'boxes': boxes.float().contiguous()[None].numpy(),
        'scores': scores.float().contiguous()[None].numpy(),
        'max_output': np.array([max_output], np.int64),  # per class: no class can place more
        'iou_threshold': np.array([iou_threshold], np.float32),
        'score_threshold': np.array([score_threshold], np.float32)})
    pairs = torch.from_numpy(selected[:, 1:])
    if pairs.numel() == 0:
        return empty
    kept = scores[pairs[:, 0], pairs[:, 1]]  # pairs come by class: a tie keeps that order
    return pairs[kept.argsort(descending=True, stable=True)[:max_output]]


@class_nms.register_fake
def _class_nms_fake(boxes, scores, iou_threshold, score_threshold, max_output):
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, 2), dtype=torch.long)


@functools.lru_cache(maxsize=None)
def _session():
    """A one-thread ONNX Runtime session of a lone ``NonMaxSuppression`` node (thresholds and
    the per-class cap are inputs)."""
    from onnx import TensorProto, helper
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
