"""Checking a converted Core ML ML program (or a detector's Vision pipeline) where Core ML
cannot run it (Linux), against the convolutions the fused network runs.

Core ML cannot predict on Linux, so :func:`inspect_coreml` reads the program instead: its input
and outputs, its op counts, one ``conv`` per convolution the fused network runs
(:func:`count_convs`) and no ``batch_norm`` left, i.e. no train-time branch survived. A
pipeline is also checked for what Core ML's own validator would refuse on the device and what
Vision needs (:func:`_check_pipeline`). Comparing predictions with PyTorch needs macOS.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..utils.capture import captured_output
from .coreml_pipeline import OUTPUTS, RAW, THRESHOLDS, VisionNMS

#: What :func:`inspect_coreml` says about predictions on a machine without Core ML.
PREDICTIONS_NOTE = ('Core ML runs predictions only on macOS (or iOS): compare this model with '
                    'PyTorch there; here the converted program was checked')


def import_coremltools():
    """coremltools, imported with its import-time chatter (the native proxies it cannot load
    on Linux) kept out of the terminal."""
    try:
        with captured_output():
            import coremltools
    except ImportError:
        raise ExportError('Core ML export needs the deploy extra (coremltools): make install '
                          '(or pip install -e ".[deploy]").') from None
    return coremltools


# ------------------------------------------------------------------------------ counting convs
def count_convs(network: nn.Module, image: Optional[Tensor] = None) -> int:
    """How many ``nn.Conv2d`` calls one forward pass of ``network`` on ``image`` makes: the
    ``conv`` ops its program must hold. Modules that inference never runs (a segmentor's
    auxiliary head) do not count.

    ``image`` defaults to zeros of the network's ``input_size`` (a detector network's anchors
    are laid out for it), else 128x128: the count does not depend on the size.
    """
    if image is None:
        image = torch.zeros(1, 3, *(getattr(network, 'input_size', None) or (128, 128)))
    calls = [0]

    def hook(*_):
        calls[0] += 1

    handles = [m.register_forward_hook(hook) for m in network.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            network(image)
    finally:
        for h in handles:
            h.remove()
    return calls[0]


# ------------------------------------------------------------------------------ reading the program
def _operations(block):
    """Every operation of a MIL block, nested blocks (conditions, loops) included."""
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _operations(inner)


def _array_type(feature) -> dict:
    """A feature's name and type; a flexible dimension's size is -1 in ``shape`` and its
    bounds are in ``ranges`` (upper bound -1: unbounded)."""
    from coremltools.proto import FeatureTypes_pb2
    kind = feature.type.WhichOneof('Type')
    optional = dict(optional=True) if feature.type.isOptional else {}
    if kind == 'imageType':
        t = feature.type.imageType
        space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.colorSpace)
        return dict(name=feature.name, type='image', color_layout=space,
                    shape=[1, 3 if space in ('RGB', 'BGR') else 1, t.height, t.width], **optional)
    if kind == 'multiArrayType':
        t = feature.type.multiArrayType
        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.dataType)
        ranges = [[r.lowerBound, r.upperBound] for r in t.shapeRange.sizeRanges]
        shape = [lo if lo == hi else -1 for lo, hi in ranges] if ranges else list(t.shape)
        return dict(name=feature.name, type='multiarray', dtype=dtype, shape=shape,
                    **(dict(ranges=ranges) if ranges else {}), **optional)
    return dict(name=feature.name, type={'doubleType': 'double'}.get(kind, kind), **optional)


def _const_values(op) -> Optional[list[float]]:
    """The float values of a ``const`` op held in the program itself (small constants)."""
    value = op.attributes.get('val')
    if value is None or value.WhichOneof('value') != 'immediateValue':
        return None
    tensor = value.immediateValue.tensor
    kind = tensor.WhichOneof('value')
    if kind in ('floats', 'doubles', 'ints'):
        return [float(v) for v in getattr(tensor, kind).values]
    if kind == 'bytes':  # fp16 constants are stored as raw bytes
        import numpy as np
        return [float(v) for v in np.frombuffer(tensor.bytes.values, dtype=np.float16)]
    return None


# ------------------------------------------------------------------------------ checking
def inspect_coreml(path: str | Path, expected_convs: int,
                   input_size: Optional[Sequence[int]] = None,
                   nms: Optional[VisionNMS] = None) -> dict:
    """Check the ML program, or the Vision pipeline holding one, at ``path`` without running it
    (Linux has no Core ML).

    Args:
        path: The ``.mlpackage``.
        expected_convs: The convolutions the fused network runs (:func:`count_convs`).
        input_size: (H, W) the ``image`` input must have, when given.
        nms: What a detector's pipeline must hold (:class:`~.coreml_pipeline.VisionNMS`): the
            package must then be a pipeline with these thresholds and labels.

    Returns a dict: ``input`` (the first input: name, type, colour layout, shape) and
    ``inputs``, ``preprocessing`` (the image input's scale and bias as the program applies
    them), ``input_ops`` (the op types between the input and the first ``conv``), ``outputs``
    (name, dtype, shape), ``op_counts`` (op type -> count; ``const`` ops are weights and
    constants), ``ops_total`` (ops other than ``const``), ``convs`` and ``expected_convs``,
    ``batch_norms``, ``precision`` (``fp16`` when the convolutions compute in FP16), ``size_mb``
    (the package on disk), ``pipeline`` (None for a plain program, else what
    :func:`_check_pipeline` read), ``problems`` (one sentence each), ``ok`` (no problem),
    ``predictions`` (:data:`PREDICTIONS_NOTE`) and ``text`` (all that in one line for a log:
    :func:`describe`).
    """
    ct = import_coremltools()
    path = Path(path)
    if not path.exists():
        raise ExportError(f'{path} does not exist: write it first (tools/export.py '
                          f'--format coreml).')
    with captured_output():
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    kind = spec.WhichOneof('Type')
    models = list(spec.pipeline.models) if kind == 'pipeline' else [spec]
    if models[0].WhichOneof('Type') != 'mlProgram':
        raise ExportError(f'{path} holds a {kind} model without an ML program first: convert '
                          f'again with tools/export.py --format coreml.')
    program_spec = models[0]
    function = program_spec.mlProgram.functions['main']
    block = function.block_specializations[function.opset]
    ops = list(_operations(block))
    counts = Counter(op.type for op in ops)
    from coremltools.proto import MIL_pb2
    conv_dtypes = {MIL_pb2.DataType.Name(o.type.tensorType.dataType)
                   for op in ops if op.type == 'conv' for o in op.outputs}
    precision = ('fp16' if conv_dtypes == {'FLOAT16'} else 'fp32' if conv_dtypes == {'FLOAT32'}
                 else '/'.join(sorted(conv_dtypes)) or 'none')

    inputs = [_array_type(f) for f in spec.description.input]
    preprocessing, input_ops = {}, []
    by_name = {o.name: op for op in ops for o in op.outputs}
    for op in block.operations:
        if op.type == 'conv':
            break
        if op.type == 'const':
            continue
        input_ops.append(op.type)
        if inputs and op.outputs[0].name in (f'{inputs[0]["name"]}__scaled__',
                                             f'{inputs[0]["name"]}__biased__'):
            const = by_name.get(op.inputs['y'].arguments[0].name)
            values = _const_values(const) if const is not None else None
            key = 'scale' if op.outputs[0].name.endswith('__scaled__') else 'bias'
            preprocessing[key] = values[0] if key == 'scale' and values else values
    preprocessing.setdefault('scale', 1.0)
    preprocessing.setdefault('bias', [0.0] * 3)

    convs, batch_norms = counts.get('conv', 0), counts.get('batch_norm', 0)
    problems = []
    if convs != expected_convs:
        problems.append(f'{convs} conv ops where the fused network runs {expected_convs} '
                        f'convolutions' + (': train-time branches survived' if
                                           convs > expected_convs else ''))
    if batch_norms:
        problems.append(f'{batch_norms} batch_norm ops left: a branch or a BN was not fused')
    if input_size is not None and inputs[0] != dict(
            inputs[0], name='image', type='image', shape=[1, 3, *input_size]):
        problems.append(f'the first input is not a 3-channel image named image of '
                        f'{input_size[0]}x{input_size[1]}')
    blobs = {op.attributes['val'].blobFileValue.fileName for op in ops if op.type == 'const'
             and op.attributes['val'].WhichOneof('value') == 'blobFileValue'}
    data = path / 'Data' / 'com.apple.CoreML'
    missing = sorted(b for b in blobs if not (data / b.replace('@model_path/', '')).is_file())
    if missing:
        problems.append(f'the weights file {missing[0]} is missing from the package')
    pipeline = None
    if kind == 'pipeline':
        pipeline = _check_pipeline(spec, nms, problems)
    elif nms is not None:
        problems.append('an ML program where a pipeline with NMS for Vision was expected')
    size = sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    report = dict(path=str(path), input=inputs[0], inputs=inputs,
                  preprocessing=preprocessing, input_ops=input_ops,
                  outputs=[_array_type(f) for f in spec.description.output],
                  op_counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                  ops_total=sum(n for t, n in counts.items() if t != 'const'),
                  convs=convs, expected_convs=int(expected_convs), batch_norms=batch_norms,
                  precision=precision, opset=function.opset, size_mb=size / 2 ** 20,
                  pipeline=pipeline, problems=problems, ok=not problems,
                  predictions=PREDICTIONS_NOTE)
    report['text'] = describe(report)
    return report


def _check_pipeline(spec, nms: Optional[VisionNMS], problems: list) -> dict:
    """Read a detector's pipeline, adding to ``problems`` what Core ML's validator or Vision
    would refuse: not [ML program, NMS]; NMS inputs that are not the program's outputs (same
    name, type and shape); outputs other than ``confidence`` (``NxC``) and ``coordinates``
    (``Nx4``) with N flexible; threshold inputs that are not optional doubles; an older
    specification than a model inside; and (with ``nms``) other thresholds or labels."""
    models = list(spec.pipeline.models)
    types = [m.WhichOneof('Type') for m in models]
    found = dict(models=types, specification_version=spec.specificationVersion)
    if types != ['mlProgram', 'nonMaximumSuppression']:
        problems.append(f'the pipeline holds {types}, not [mlProgram, nonMaximumSuppression]')
        return found
    program, suppression = models
    p = suppression.nonMaximumSuppression
    classes = list(p.stringClassLabels.vector)
    found.update(iou_threshold=p.iouThreshold, confidence_threshold=p.confidenceThreshold,
                 per_class=p.pickTop.perClass, classes=classes,
                 raw_outputs=[_array_type(f) for f in program.description.output])
    raw = {f.name: f for f in program.description.output}
    if program.description.input[0].type != spec.description.input[0].type:
        problems.append('the ML program\'s image input differs from the pipeline\'s')
    shapes = {f['name']: f['shape'] for f in found['raw_outputs']}
    anchors = shapes.get(RAW[1], [0])[0]
    if shapes != {RAW[0]: [anchors, len(classes)], RAW[1]: [anchors, 4]}:
        problems.append(f'the ML program\'s outputs are {shapes}, not {anchors}x'
                        f'{len(classes)} scores and {anchors}x4 boxes for {len(classes)} labels')
    wiring = (p.confidenceInputFeatureName, p.coordinatesInputFeatureName,
              p.iouThresholdInputFeatureName, p.confidenceThresholdInputFeatureName,
              p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName)
    if wiring != (*RAW, *THRESHOLDS, *OUTPUTS):
        problems.append(f'the NMS reads and writes {wiring}, not {(*RAW, *THRESHOLDS, *OUTPUTS)}')
    nms_inputs = {f.name: f for f in suppression.description.input}
    if any(nms_inputs.get(n) is None or nms_inputs[n].type != raw.get(n, nms_inputs[n]).type
           for n in RAW):
        problems.append('the NMS inputs differ in type or shape from the ML program\'s outputs')
    dtype = _array_type(raw[RAW[0]]).get('dtype') if RAW[0] in raw else None
    for where, features in (('pipeline', spec.description), ('NMS', suppression.description)):
        outputs = [_array_type(f) for f in features.output]
        expected = [dict(name=n, type='multiarray', dtype=dtype, shape=[-1, w],
                         ranges=[[0, -1], [w, w]]) for n, w in zip(OUTPUTS, (len(classes), 4))]
        if outputs != expected:
            problems.append(f'the {where} outputs are not confidence Nx{len(classes)} and '
                            f'coordinates Nx4 of {dtype} with N flexible')
        thresholds = [_array_type(f) for f in features.input if f.name in THRESHOLDS]
        if thresholds != [dict(name=n, type='double', optional=True) for n in THRESHOLDS]:
            problems.append(f'the {where} inputs lack the optional doubles '
                            f'{" and ".join(THRESHOLDS)}')
    if dtype not in ('FLOAT32', 'DOUBLE'):
        problems.append(f'Core ML\'s NMS takes FLOAT32 or DOUBLE scores, the program gives {dtype}')
    if spec.specificationVersion < max(m.specificationVersion for m in models):
        problems.append(f'the pipeline\'s specification version {spec.specificationVersion} is '
                        f'older than a model inside')
    if not p.pickTop.perClass:
        problems.append('the NMS suppresses across classes, mmdet within each class')
    if not (0 <= p.iouThreshold <= 1 and p.confidenceThreshold >= 0):
        problems.append(f'NMS thresholds out of range: IoU {p.iouThreshold}, confidence '
                        f'{p.confidenceThreshold}')
    if nms is not None:
        if (p.iouThreshold, p.confidenceThreshold) != (nms.iou_threshold,
                                                       nms.confidence_threshold):
            problems.append(f'NMS thresholds IoU {p.iouThreshold:g}, confidence '
                            f'{p.confidenceThreshold:g} where the config has '
                            f'{nms.iou_threshold:g}, {nms.confidence_threshold:g}')
        if classes != list(nms.classes):
            problems.append(f'labels {classes} where the classes are {list(nms.classes)}')
    return found


def describe(report: dict) -> str:
    """One line for a log: what :func:`inspect_coreml` found."""
    inp = report['input']
    shape = 'x'.join(str(s) for s in inp.get('shape', []))
    verdict = 'OK' if report['ok'] else 'FAILED: ' + '; '.join(report['problems'])
    pipeline = report.get('pipeline')
    what = 'program' if pipeline is None else 'pipeline'
    if pipeline and 'classes' in pipeline:
        nms = (f'; then NMS ({"class-wise" if pipeline["per_class"] else "across classes"}, '
               f'IoU {pipeline["iou_threshold"]:g}, confidence '
               f'{pipeline["confidence_threshold"]:g}, {len(pipeline["classes"])} labels)')
    else:
        nms = ''
    outputs = ', '.join(f'{o["name"]} ' + 'x'.join('N' if s == -1 else str(s)
                                                   for s in o.get('shape', []))
                        for o in report['outputs'])
    return (f'Core ML {what} check: {inp.get("type")} input {inp.get("name")} {shape} '
            f'{inp.get("color_layout", "")}; ML program: {report["convs"]} conv ops '
            f'(fused network: {report["expected_convs"]}), {report["batch_norms"]} batch_norm, '
            f'{report["ops_total"]} ops, {report["precision"]}{nms}; outputs {outputs}; '
            f'{report["size_mb"]:.1f} MB: {verdict}. {report["predictions"]}.')
