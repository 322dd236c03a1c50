"""Writing a network as a Core ML ML program (``.mlpackage``) with coremltools, and checking the
converted program where Core ML cannot run it (Linux).

The network (:meth:`~mobileone_dense.tasks.base.Task.network`) is exported with
``torch.export`` and converted to an ML program, FP16 weights and compute by default
(``precision='fp32'`` keeps float32). Its input ``image`` is a Core ML *image* of the export
size (``1x3xHxW``): the app hands Core ML a picture, already resized (Vision's
``VNCoreMLRequest`` resizes it), and Core ML gives the network its channels in the order the
network expects and applies ``scale * pixel + bias``. What the config's data preprocessor did
(:class:`~.graph.Normalize`) is split between the two (:func:`fold_normalize`):

- the channel order is the image input's colour layout: RGB when the preprocessor swaps mmcv's
  BGR to RGB (``bgr_to_rgb=True``, every config here), else BGR; the graph has no swap;
- the mean goes into the input's per-channel ``bias``;
- the division by std goes into the input's ``scale`` when std is equal across channels, and
  otherwise stays in the graph as one per-channel multiply by ``1 / std`` (Core ML's ``scale``
  is one number for all channels; the configs here use ImageNet's std 58.395/57.12/57.375).

So ``scale * pixel + bias`` then the multiply equals ``(pixel - mean) / std`` in the network's
channel order, exactly as :class:`~.graph.Normalize` computes it on the BGR tensor.

Core ML cannot predict on Linux, so :func:`inspect_coreml` checks the converted program
instead: its input and outputs, its op counts, one ``conv`` per convolution the fused network
runs (:func:`count_convs`) and no ``batch_norm`` left, i.e. no train-time branch survived.
Comparing predictions with PyTorch needs macOS.
"""
from __future__ import annotations

import contextlib
import copy
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..utils.capture import captured_output
from ..utils.conv_hooks import run_with_conv_hook
from .graph import Normalize

#: The precisions :func:`write_coreml` writes: weights and compute in FP16 (Core ML's default,
#: what the Neural Engine runs) or float32.
PRECISIONS = ('fp16', 'fp32')
#: The oldest OS that runs the program: ML programs came with iOS 15 / macOS 12.
DEPLOYMENT_TARGET = 'iOS15'
#: What :func:`inspect_coreml` says about predictions on a machine without Core ML.
PREDICTIONS_NOTE = ('Core ML runs predictions only on macOS (or iOS): compare this model with '
                    'PyTorch there; here the converted program was checked')


def _coremltools():
    """coremltools, imported with its import-time chatter (the native proxies it cannot load
    on Linux) kept out of the terminal."""
    try:
        with captured_output():
            import coremltools
    except ImportError:
        raise ExportError('Core ML export needs the deploy extra (coremltools): make install '
                          '(or pip install -e ".[deploy]").') from None
    return coremltools


# ------------------------------------------------------------------------------ the image input
@dataclass
class ImageFolding:
    """How :class:`~.graph.Normalize` splits between Core ML's image input and the graph.

    Core ML hands the network the image's channels in ``color_layout`` order and computes
    ``scale * pixel + bias[c]``; the graph then multiplies channel ``c`` by ``factor[c]``
    (``factor`` None: nothing left in the graph).
    """
    color_layout: str  # 'RGB' or 'BGR': the network's channel order
    scale: float
    bias: list[float]
    factor: Optional[list[float]]

    def apply(self, bgr: Tensor) -> Tensor:
        """What the network sees from a BGR ``1x3xHxW`` 0..255 image: Core ML's image input
        and then the graph's multiply, in PyTorch (for tests and for reading)."""
        x = bgr.flip(1) if self.color_layout == 'RGB' else bgr
        x = self.scale * x + torch.tensor(self.bias, dtype=x.dtype).view(1, -1, 1, 1)
        return x if self.factor is None else x * torch.tensor(
            self.factor, dtype=x.dtype).view(1, -1, 1, 1)


def fold_normalize(normalize: Normalize) -> ImageFolding:
    """Split ``normalize`` (the data preprocessor as graph ops) into Core ML's image input
    and what must stay in the graph (see the module doc)."""
    mean = [float(v) for v in normalize.mean.flatten()]
    std = [float(v) for v in normalize.std.flatten()]
    if len(mean) != 3 or len(std) != 3:
        raise ExportError(f'Core ML image inputs have 3 channels, the data preprocessor '
                          f'normalises {len(mean)}: export a 3-channel model.')
    layout = 'RGB' if normalize.swap else 'BGR'
    if max(std) - min(std) <= 1e-6 * max(std):  # one std: all of it in the input
        scale = 1.0 / std[0]
        return ImageFolding(layout, scale, [-m * scale for m in mean], None)
    return ImageFolding(layout, 1.0, [-m for m in mean], [1.0 / s for s in std])


class ChannelScale(nn.Module):
    """What remains of :class:`~.graph.Normalize` in the Core ML graph: a per-channel
    multiply, or nothing."""

    def __init__(self, factor: Optional[Sequence[float]]) -> None:
        super().__init__()
        self.register_buffer('factor', None if factor is None else
                             torch.tensor(list(factor)).view(1, -1, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        return image if self.factor is None else image * self.factor


def image_network(network: nn.Module) -> tuple[nn.Module, ImageFolding]:
    """A shallow copy of ``network`` whose normalisation is what the image input leaves to the
    graph, and the folding. ``network`` itself is not changed.

    A network without a :class:`~.graph.NetworkCore` (``network.core.normalize``) gets the
    image as it is: BGR, 0..255.
    """
    core = getattr(network, 'core', None)
    normalize = getattr(core, 'normalize', None)
    if not isinstance(normalize, Normalize):
        return network, ImageFolding('BGR', 1.0, [0.0, 0.0, 0.0], None)
    folding = fold_normalize(normalize)
    new_core = copy.copy(core)  # shares every module but the normalisation
    new_core._modules = dict(core._modules)
    new_core.normalize = ChannelScale(folding.factor)
    new = copy.copy(network)
    new._modules = dict(network._modules)
    new.core = new_core
    return new.eval(), folding


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

    run_with_conv_hook(network, image, hook)
    return calls[0]


# ------------------------------------------------------------------------------ writing
@contextlib.contextmanager
def _quiet():
    """Python warnings of the exporter and converter (deprecations inside coremltools, by the
    hundred) are chatter too."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ''


def write_coreml(network: nn.Module, image: Tensor, path: str | Path, precision: str = 'fp16',
                 output_names: Sequence[str] = ('output', ),
                 log: Callable[[str], None] = print) -> Path:
    """Convert ``network`` (``1x3xHxW`` BGR 0..255 image in, a tensor or tuple of tensors out)
    to an ML program at ``path`` (a ``.mlpackage`` folder, replaced if it exists).

    Args:
        network: The fused network (:meth:`Task.network`), in eval mode.
        image: An example input; its shape is the model's input shape.
        path: Where the ``.mlpackage`` goes.
        precision: ``'fp16'`` (weights and compute) or ``'fp32'``.
        output_names: The names of the network's outputs, in order.
        log: Where the progress lines go (the converter's own output is kept out of it).

    Raises:
        ExportError: One sentence: the converter's message and what to do.
    """
    if precision not in PRECISIONS:
        raise ExportError(f'Unknown Core ML precision {precision!r}: choose '
                          f'{" or ".join(PRECISIONS)}.')
    path = Path(path)
    if path.suffix != '.mlpackage':
        raise ExportError(f'A Core ML ML program is a .mlpackage folder, got {path}: '
                          f'name it model.mlpackage.')
    ct = _coremltools()
    graph, folding = image_network(network.eval())
    name = type(network).__name__
    shape = tuple(image.shape)
    stage = 'torch.export'
    captured = None
    try:
        log(f'Core ML: exporting {name} ({shape[2]}x{shape[3]}) with torch.export ...')
        start = time.perf_counter()
        with captured_output() as captured, torch.no_grad(), _quiet():
            program = torch.export.export(graph, (image, )).run_decompositions({})
        stage = 'coremltools'
        log(f'Core ML: converting to an ML program ({precision}) ...')
        with captured_output() as captured, _quiet():
            layout = getattr(ct.colorlayout, folding.color_layout)
            inputs = [ct.ImageType(name='image', shape=shape, color_layout=layout,
                                   scale=folding.scale, bias=folding.bias)]
            model = ct.convert(
                program, inputs=inputs, outputs=[ct.TensorType(name=n) for n in output_names],
                convert_to='mlprogram',
                compute_precision=(ct.precision.FLOAT16 if precision == 'fp16'
                                   else ct.precision.FLOAT32),
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                skip_model_load=True)
            _describe(model, folding, shape, precision)
            stage = 'saving'
            if path.exists():
                shutil.rmtree(path)
            model.save(str(path))
    except ExportError:
        raise
    except Exception as e:
        with contextlib.suppress(OSError):
            shutil.rmtree(path)
        message = _first_line(e)
        if not message and captured is not None and captured.text:  # say what it printed
            message = captured.tail(1)
        what = {'torch.export': 'torch.export could not export',
                'coremltools': 'coremltools could not convert',
                'saving': 'coremltools could not save'}[stage]
        raise ExportError(f'{what} {name} for {path.name} ({type(e).__name__}: {message}); '
                          f'nothing was written: report this with the config.') from None
    log(f'Core ML: wrote {path.name} in {time.perf_counter() - start:.0f} s')
    return path


def _describe(model, folding: ImageFolding, shape: Sequence[int], precision: str) -> None:
    """The descriptions Xcode shows for the model and its input."""
    model.short_description = (f'MobileOne network (mobileone_dense), {precision}, '
                               f'{shape[2]}x{shape[3]} image input')
    model.input_description['image'] = (
        f'{folding.color_layout} image of exactly {shape[3]}x{shape[2]} (W x H), resized as '
        f'the config test pipeline resizes; normalisation is inside')
    meta = model.user_defined_metadata
    meta['mobileone_dense.color_layout'] = folding.color_layout
    short = lambda v: None if v is None else [float(f'{x:.7g}') for x in v]  # noqa: E731
    meta['mobileone_dense.input_scale'] = f'{folding.scale:.7g}'
    meta['mobileone_dense.input_bias'] = str(short(folding.bias))
    meta['mobileone_dense.graph_channel_factor'] = str(short(folding.factor))
    meta['mobileone_dense.precision'] = precision


# ------------------------------------------------------------------------------ checking
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
    ct = _coremltools()
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


def export_coreml(network: nn.Module, image: Tensor, path: str | Path, precision: str = 'fp16',
                  output_names: Sequence[str] = ('output', ),
                  log: Callable[[str], None] = print) -> dict:
    """:func:`write_coreml`, then :func:`inspect_coreml` against the convolutions ``network``
    runs (:func:`count_convs`), with the finding logged (:func:`describe`).

    Returns the check's report. Raises ExportError (and removes the package) when the program
    fails the check.
    """
    path = write_coreml(network, image, path, precision, output_names, log)
    report = inspect_coreml(path, count_convs(network, image))
    log(report['text'])
    if not report['ok']:
        shutil.rmtree(path, ignore_errors=True)
        problems = '; '.join(report['problems'])
        raise ExportError(f'The Core ML program fails its check ({problems}), so nothing was '
                          f'written: convert the fused network (export.fusion.fuse); if it was '
                          f'fused, report this with the config.')
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
