"""Checking a converted Core ML ML program where Core ML cannot run it (Linux), against the
convolutions the fused network runs.

Core ML cannot predict on Linux, so :func:`inspect_coreml` reads the program instead: its input
and outputs, its op counts, one ``conv`` per convolution the fused network runs
(:func:`count_convs`) and no ``batch_norm`` left, i.e. no train-time branch survived.
Comparing predictions with PyTorch needs macOS.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..utils.capture import captured_output

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
    kind = feature.type.WhichOneof('Type')
    if kind == 'imageType':
        t = feature.type.imageType
        from coremltools.proto import FeatureTypes_pb2
        space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.colorSpace)
        return dict(name=feature.name, type='image', color_layout=space,
                    shape=[1, 3 if space in ('RGB', 'BGR') else 1, t.height, t.width])
    if kind == 'multiArrayType':
        t = feature.type.multiArrayType
        from coremltools.proto import FeatureTypes_pb2
        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.dataType)
        return dict(name=feature.name, type='multiarray', dtype=dtype, shape=list(t.shape))
    return dict(name=feature.name, type=kind)


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
def inspect_coreml(path: str | Path, expected_convs: int) -> dict:
    """Check the ML program at ``path`` without running it (Linux has no Core ML).

    Returns a dict: ``input`` (name, type, colour layout, shape), ``preprocessing`` (the image
    input's scale and bias as the program applies them), ``input_ops`` (the op types between
    the input and the first ``conv``), ``outputs`` (name, dtype, shape), ``op_counts`` (op
    type -> count; ``const`` ops are weights and constants), ``ops_total`` (ops other than
    ``const``), ``convs`` and ``expected_convs``, ``batch_norms``, ``precision`` (``fp16``
    when the convolutions compute in FP16), ``size_mb`` (the package on disk), ``problems``
    (one sentence each), ``ok`` (no problem), ``predictions`` (:data:`PREDICTIONS_NOTE`) and
    ``text`` (all that in one line for a log: :func:`describe`).
    """
    ct = import_coremltools()
    path = Path(path)
    if not path.exists():
        raise ExportError(f'{path} does not exist: write it first (tools/export.py '
                          f'--format coreml).')
    with captured_output():
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    if spec.WhichOneof('Type') != 'mlProgram':
        raise ExportError(f'{path} holds a {spec.WhichOneof("Type")} model, not an ML program: '
                          f'convert again with tools/export.py --format coreml.')
    function = spec.mlProgram.functions['main']
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
    size = sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    report = dict(path=str(path), input=inputs[0] if len(inputs) == 1 else inputs,
                  preprocessing=preprocessing, input_ops=input_ops,
                  outputs=[_array_type(f) for f in spec.description.output],
                  op_counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                  ops_total=sum(n for t, n in counts.items() if t != 'const'),
                  convs=convs, expected_convs=int(expected_convs), batch_norms=batch_norms,
                  precision=precision, opset=function.opset, size_mb=size / 2 ** 20,
                  problems=problems, ok=not problems, predictions=PREDICTIONS_NOTE)
    report['text'] = describe(report)
    return report


def describe(report: dict) -> str:
    """One line for a log: what :func:`inspect_coreml` found."""
    inp = report['input']
    shape = 'x'.join(str(s) for s in inp.get('shape', []))
    verdict = 'OK' if report['ok'] else 'FAILED: ' + '; '.join(report['problems'])
    return (f'Core ML program check: {inp.get("type")} input {inp.get("name")} {shape} '
            f'{inp.get("color_layout", "")}, outputs '
            f'{", ".join(o["name"] for o in report["outputs"])}; {report["convs"]} conv ops '
            f'(fused network: {report["expected_convs"]}), {report["batch_norms"]} batch_norm, '
            f'{report["ops_total"]} ops, {report["precision"]}, {report["size_mb"]:.1f} MB: '
            f'{verdict}. {report["predictions"]}.')
