"""A detector as Apple's Vision framework wants it: a Core ML pipeline of the network (an ML
program ending in Vision's box convention) and a ``NonMaximumSuppression`` model, which
``VNCoreMLRequest`` turns into ``VNRecognizedObjectObservation``\\ s (labels, confidences and
boxes) with no post-processing in the app.

:class:`VisionBoxes` appends the box conversion to the network before it is converted;
:func:`vision_nms` takes the thresholds from mmdet's ``test_cfg`` (class-wise NMS, as mmdet
runs it); :func:`make_vision_pipeline` joins the program and the NMS model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError

#: The ML program's outputs, which the NMS model reads: ``AxC`` class scores and ``Ax4`` boxes.
RAW = ('raw_confidence', 'raw_coordinates')
#: The pipeline's outputs (``NxC`` and ``Nx4``, N the boxes NMS keeps), the names Vision reads.
OUTPUTS = ('confidence', 'coordinates')
#: The pipeline's optional inputs that override the NMS thresholds at run time.
THRESHOLDS = ('iouThreshold', 'confidenceThreshold')


@dataclass
class VisionNMS:
    """What the pipeline's NMS model does: class-wise NMS at ``iou_threshold`` over boxes
    scoring at least ``confidence_threshold``, naming the classes ``classes``."""
    iou_threshold: float
    confidence_threshold: float
    classes: list


def vision_nms(test_cfg, num_classes: int, classes: Optional[Sequence[str]] = None,
               log: Callable[[str], None] = print) -> VisionNMS:
    """The NMS of mmdet's ``test_cfg`` (``nms.iou_threshold``, ``score_thr``) for a detector of
    ``num_classes``, labelled ``classes``, or ``0..N-1`` (said in one ``log`` line) without them.

    Raises:
        ExportError: The config asks for an NMS Core ML does not run, or ``classes`` does not
            name every class.
    """
    nms = dict((test_cfg or {}).get('nms') or {})
    if nms.get('type', 'nms') != 'nms' or nms.get('class_agnostic', False):
        raise ExportError(f'Core ML runs class-wise hard NMS, the config asks for {nms}: set '
                          f'model.test_cfg.nms=dict(type="nms", iou_threshold=...).')
    if not classes:
        log(f'note: no class names given, so the Core ML model labels the classes '
            f'0..{num_classes - 1}')
        classes = [str(i) for i in range(num_classes)]
    if len(classes) != num_classes:
        raise ExportError(f'The checkpoint names {len(classes)} classes but the detector has '
                          f'{num_classes}: export the checkpoint trained with this config.')
    return VisionNMS(float(nms.get('iou_threshold', 0.5)), float(test_cfg.get('score_thr', 0)),
                     [str(c) for c in classes])


class VisionBoxes(nn.Module):
    """``network``'s ``boxes`` (``1xAx4``, x1 y1 x2 y2 in input pixels) and ``scores``
    (``1xAxC``) as Core ML's NMS takes them: ``raw_confidence`` (``AxC``) and
    ``raw_coordinates`` (``Ax4``: centre x, centre y, width, height as fractions of the input's
    sides, which Vision maps onto the picture it was given). One matrix product does it."""

    def __init__(self, network: nn.Module, input_size: Sequence[int]) -> None:
        super().__init__()
        self.network = network
        h, w = (float(s) for s in input_size)
        self.register_buffer('to_xywh', torch.tensor([  # rows: x1, y1, x2, y2
            [0.5 / w, 0, -1 / w, 0], [0, 0.5 / h, 0, -1 / h],
            [0.5 / w, 0, 1 / w, 0], [0, 0.5 / h, 0, 1 / h]]), persistent=False)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        boxes, scores = self.network(image)
        return scores[0], boxes[0] @ self.to_xywh


def _nms_spec(ct, program, nms: VisionNMS):
    """The ``nonMaximumSuppression`` model reading ``program``'s :data:`RAW` outputs."""
    spec = ct.proto.Model_pb2.Model()
    spec.specificationVersion = program.get_spec().specificationVersion
    raw = {o.name: o for o in program.get_spec().description.output}
    for name in RAW:  # the same types as the program's outputs, or the pipeline is invalid
        spec.description.input.add().CopyFrom(raw[name])
    for name in THRESHOLDS:
        feature = spec.description.input.add(name=name)
        feature.type.doubleType.SetInParent()
        feature.type.isOptional = True
    for name, source, width in zip(OUTPUTS, RAW, (len(nms.classes), 4)):
        array = spec.description.output.add(name=name).type.multiArrayType
        array.dataType = raw[source].type.multiArrayType.dataType
        array.shapeRange.sizeRanges.add(lowerBound=0, upperBound=-1)  # as many as NMS keeps
        array.shapeRange.sizeRanges.add(lowerBound=width, upperBound=width)
    p = spec.nonMaximumSuppression
    p.confidenceInputFeatureName, p.coordinatesInputFeatureName = RAW
    p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName = OUTPUTS
    p.iouThresholdInputFeatureName, p.confidenceThresholdInputFeatureName = THRESHOLDS
    p.iouThreshold, p.confidenceThreshold = nms.iou_threshold, nms.confidence_threshold
    p.pickTop.perClass = True  # mmdet's batched_nms suppresses within a class only
    p.stringClassLabels.vector.extend(nms.classes)
    return spec


def make_vision_pipeline(ct, program, nms: VisionNMS):
    """``program`` (an ML program with :data:`RAW` outputs) then its NMS model, as one Core ML
    pipeline: input ``image`` and the optional :data:`THRESHOLDS`, outputs :data:`OUTPUTS`.
    The pipeline's package carries the program's weights file, which its ops name."""
    program_spec = program.get_spec()
    nms_spec = _nms_spec(ct, program, nms)
    spec = ct.proto.Model_pb2.Model(specificationVersion=program_spec.specificationVersion)
    spec.description.input.extend([program_spec.description.input[0],
                                   *nms_spec.description.input[len(RAW):]])
    spec.description.output.extend(nms_spec.description.output)
    spec.pipeline.models.extend([program_spec, nms_spec])
    pipeline = ct.models.MLModel(spec, weights_dir=program.weights_dir, skip_model_load=True)
    pipeline.input_description['iouThreshold'] = (
        f'(optional) IoU threshold of the class-wise NMS (default {nms.iou_threshold:g})')
    pipeline.input_description['confidenceThreshold'] = (
        f'(optional) lowest class confidence kept (default {nms.confidence_threshold:g})')
    pipeline.output_description['confidence'] = (
        'boxes x class confidence, classes as labelled (metadata "classes")')
    pipeline.output_description['coordinates'] = (
        'boxes x [centre x, centre y, width, height], relative to the image size')
    meta = pipeline.user_defined_metadata
    meta['classes'] = ','.join(nms.classes)
    meta['mobileone_dense.iou_threshold'] = f'{nms.iou_threshold:g}'
    meta['mobileone_dense.confidence_threshold'] = f'{nms.confidence_threshold:g}'
    return pipeline
