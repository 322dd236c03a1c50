"""Writing a network as a LiteRT (``.tflite``) model with litert-torch, in float32 or with int8
weights and activations (PT2E post-training quantization, calibrated).

The model takes a ``1xHxWx3`` float32 image (channels last, 0..255, channels as mmcv loads
them), with the config's normalisation inside. INT8 quantizes what XNNPACK runs in int8 (every
convolution with its ReLU or ReLU6, additions, pooling) inside the detector or segmentor proper
(the wrapper's ``core``: backbone, neck and head maps); the box decoding, the softmax
and the segmentor's final resize and argmax stay in float32, where 8 bits would cost
accuracy for no speed.
Every convolution's scales are kept within what XNNPACK's int8 kernels take
(:func:`fit_requantization_scales`), or LiteRT refuses the whole model.
Weights are symmetric per output channel: a fused MobileOne kernel sums several branches, and
its channels' ranges differ more than a plain convolution's (QARepVGG, Chu et al. 2022).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..utils.capture import captured_output
from .graph import fold_normalization


def _litert_torch():
    try:
        import litert_torch
    except ImportError:
        raise ExportError('LiteRT export needs the deploy extra (litert-torch, ai-edge-litert): '
                          'make install (or pip install -e ".[deploy]").') from None
    return litert_torch


def channels_last(image: Tensor) -> Tensor:
    return image.permute(0, 2, 3, 1).contiguous()


def annotate_adds(graph_module, config) -> int:
    """Mark every tensor-tensor ``add`` of ``graph_module`` that litert-torch's quantizer left
    unmarked as an int8 op (inputs and output quantized by ``config``); returns how many.

    The quantizer finds adds by their ``source_fn_stack`` metadata, which ``torch.export``
    of torch 2.13 no longer records, so it marks none. An add between two quantized convs
    still became an int8 ``ADD`` (the convs' own marks surround it), but an add fed by another
    add (MobileNetV2's chained residual blocks) kept a float input, and LiteRT ran it as
    DEQUANTIZE -> float ADD -> QUANTIZE: 9 of SSDLite-MobileNetV2's 10 residual adds.
    """
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    input_qspec = utils.get_input_act_qspec(config)
    output_qspec = utils.get_output_act_qspec(config)
    marked = 0
    for node in graph_module.graph.nodes:
        if node.op != 'call_function' or node.target is not torch.ops.aten.add.Tensor:
            continue
        annotation = node.meta.get('quantization_annotation')
        inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if (annotation is not None and annotation._annotated) or len(inputs) != 2 or not all(
                isinstance(a.meta.get('val'), Tensor) and a.meta['val'].is_floating_point()
                for a in inputs):
            continue
        node.meta['quantization_annotation'] = QuantizationAnnotation(
            input_qspec_map={a: input_qspec for a in inputs}, output_qspec=output_qspec,
            _annotated=True)
        marked += 1
    return marked


_CONVS = (torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default,
          torch.ops.aten.convolution.default)
_HARDTANHS = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
_RELU6S = (torch.ops.aten.relu6.default, torch.ops.aten.relu6_.default)


def _is_relu6(node) -> bool:
    """``node`` is ReLU6: ``F.relu6`` exports as ``relu6``, ``nn.ReLU6`` (mmcv's) as
    ``hardtanh(x, 0, 6)``."""
    if node.op != 'call_function':
        return False
    if node.target in _RELU6S:
        return True
    return node.target in _HARDTANHS and tuple(float(b) for b in node.args[1:3]) == (0.0, 6.0)


def _annotated(node) -> bool:
    annotation = node.meta.get('quantization_annotation')
    return annotation is not None and annotation._annotated


def annotate_conv_relu6(graph_module, config) -> int:
    """Mark every convolution followed by ReLU6 (:func:`_is_relu6`; SSDLite's neck and head)
    in ``graph_module`` as one int8 op whose output is observed after the clamp, as
    litert-torch does for conv -> ReLU; returns how many.

    litert-torch's quantizer observes such a conv at its output and lets the ReLU6 share that
    observer, so the clamped tensor is quantized over the unclamped range. A trained network
    hides this; in a randomly initialised SSDLite-S0 the neck's first conv gives +-1e6, its
    ReLU6 output (0..6) got scale 8e3 (every value rounds to the zero point) and the next
    depthwise conv's requantization scale (input scale x weight scale / output scale) reached
    611: XNNPACK's int8 convolution takes less than 256, so LiteRT refused the whole model.
    The converter fuses the ReLU6 into the conv either way (TFLite's fused RELU6).
    """
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    marked = 0
    for clamp in graph_module.graph.nodes:
        if not _is_relu6(clamp):
            continue
        conv = clamp.args[0]
        if (not isinstance(conv, torch.fx.Node) or conv.op != 'call_function'
                or conv.target not in _CONVS or len(conv.users) != 1):
            continue
        weight = conv.args[1]
        bias = conv.args[2] if len(conv.args) > 2 else None
        partition = [n for n in (conv, weight, bias) if isinstance(n, torch.fx.Node)]
        if _annotated(clamp) or any(_annotated(n) for n in partition):
            continue
        input_qspec_map = {conv.args[0]: utils.get_input_act_qspec(config),
                           weight: utils.get_weight_qspec(config)}
        if isinstance(bias, torch.fx.Node):
            input_qspec_map[bias] = utils.get_bias_qspec(config)
        conv.meta['quantization_annotation'] = QuantizationAnnotation(
            input_qspec_map=input_qspec_map, _annotated=True)
        clamp.meta['quantization_annotation'] = QuantizationAnnotation(
            output_qspec=utils.get_output_act_qspec(config), _annotated=True)
        for node in partition[1:]:  # the weight and bias belong to this op
            node.meta.setdefault('quantization_annotation', QuantizationAnnotation())
            node.meta['quantization_annotation']._annotated = True
        marked += 1
    return marked


#: XNNPACK's int8 convolution and fully connected operators refuse a requantization scale
#: (input scale x weight scale / output scale, per output channel) of 256 or more; with it,
#: LiteRT fails to prepare the whole model. A little under, for float32 rounding.
MAX_REQUANTIZATION_SCALE = 255.0
_LINEAR_OPS = _CONVS + (torch.ops.aten.linear.default, )
_FUSED_ACTIVATIONS = ((torch.ops.aten.relu.default, torch.ops.aten.relu_.default) + _HARDTANHS
                      + _RELU6S)


def _observer(graph_module, node):
    """The observer module that ``node`` calls, or None."""
    if node is None or node.op != 'call_module':
        return None
    module = graph_module.get_submodule(node.target)
    return module if hasattr(module, 'calculate_qparams') and hasattr(module, 'eps') else None


def _output_observer(graph_module, op):
    """The observer of ``op``'s output after its fused ReLU or ReLU6, or None."""
    while len(op.users) == 1 and next(iter(op.users)).target in _FUSED_ACTIVATIONS:
        op = next(iter(op.users))
    return next((m for m in (_observer(graph_module, u) for u in op.users) if m is not None),
                None)


def fit_requantization_scales(prepared) -> int:
    """Raise the output scale of every calibrated int8 convolution (and linear) of
    ``prepared`` whose requantization scale would exceed :data:`MAX_REQUANTIZATION_SCALE`,
    until it does not (through the output observer's ``eps``, its smallest scale); returns
    how many.

    Calibration sets an output scale from the values it saw, and nothing ties it to the
    input's: a ReLU or ReLU6 that leaves (nearly) nothing of its conv's range on the
    calibration images (a randomly initialised backbone whose activations reach 1e5 and more
    before SSDLite's neck clamps them to 0..6, or a ReLU that is all zero) gives an output
    step hundreds of times finer than the accumulator's (input step x weight step), which
    XNNPACK refuses. Such an output step is finer than the conv can resolve anyway, so the
    coarser one costs nothing; trained networks stay untouched (the demo models' largest
    ratio is 0.04).
    """
    scales: dict[int, torch.Tensor] = {}  # a histogram observer's qparams take a search

    def scale(observer) -> torch.Tensor:
        if id(observer) not in scales:
            scales[id(observer)] = observer.calculate_qparams()[0]
        return scales[id(observer)]

    raised = 0
    for op in prepared.graph.nodes:
        if op.op != 'call_function' or op.target not in _LINEAR_OPS or len(op.args) < 2:
            continue
        observers = [_observer(prepared, a) if isinstance(a, torch.fx.Node) else None
                     for a in op.args[:2]]
        output = _output_observer(prepared, op)
        if None in observers or output is None:
            continue  # not an int8 op
        smallest = (float(scale(observers[0]).max()) * float(scale(observers[1]).max())
                    / MAX_REQUANTIZATION_SCALE)
        if float(scale(output).min()) < smallest:
            output.eps.fill_(smallest)
            scales[id(output)] = output.calculate_qparams()[0]  # what later ops take in
            raised += 1
    return raised


def _quantizer(config):
    """litert-torch's PT2E quantizer with ``config`` everywhere, conv -> ReLU6
    (:func:`annotate_conv_relu6`, marked first so that litert-torch's own conv pattern leaves
    them alone) and adds (:func:`annotate_adds`) included."""
    from litert_torch.quantize import pt2e_quantizer

    class Quantizer(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model):
            annotate_conv_relu6(model, self.global_config)
            model = super().annotate(model)
            annotate_adds(model, self.global_config)
            return model
    return Quantizer().set_global(config)


def quantize_pt2e(network: nn.Module, image: Tensor, calibration: Iterable[Tensor]):
    """A copy of ``network`` whose ``core`` (:class:`~.graph.NetworkCore`: normalisation,
    backbone, neck, head maps) carries int8 quantize/dequantize pairs, calibrated on
    ``calibration`` (``1x3xHxW`` images); returns it and the quantizer that marked it
    (:func:`_quantizer`), which the converter takes as its quantization mode."""
    _litert_torch()
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e as pt2e
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    quantizer = _quantizer(config)
    exported = torch.export.export(network.core.eval(), (image, )).module()
    prepared = pt2e.prepare_pt2e(exported, quantizer)
    count = 0
    with torch.no_grad():
        for calib in calibration:
            prepared(calib)
            count += 1
    if count == 0:
        raise ExportError('INT8 export needs calibration images and got none: pass --calib N '
                          '(N > 0) or --calib-data DIR with images in it.')
    fit_requantization_scales(prepared)
    quantized = copy.copy(network)  # shares everything but the core
    quantized._modules = dict(network._modules)
    quantized.core = pt2e.convert_pt2e(prepared, fold_quantize=False)
    # an exported graph refuses .eval() unless told that it has nothing to switch
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    allow_exported_model_train_eval(quantized.core)
    return quantized.eval(), quantizer


def write_tflite(network: nn.Module, image: Tensor, path: str | Path,
                 calibration: Optional[Iterable[Tensor]] = None) -> Path:
    """Convert ``network`` (``1x3xHxW`` image in, a tuple of tensors out) to ``path``.

    With ``calibration`` (``1x3xHxW`` images drawn as the config's test pipeline draws them),
    activations and weights are int8 (see the module doc); otherwise float32. The
    normalisation's channel swap and division by std are folded into the first convolution
    (:func:`~.graph.fold_normalization`): only ``image - mean`` runs in front of it.
    """
    litert_torch = _litert_torch()
    network = fold_normalization(network, image)
    path = Path(path)
    captured = None
    try:
        with captured_output() as captured:
            if calibration is None:
                module = litert_torch.to_channel_last_io(network, args=[0]).eval()
                edge = litert_torch.convert(module, (channels_last(image), ))
            else:
                from litert_torch.quantize import quant_config
                quantized, quantizer = quantize_pt2e(network, image, calibration)
                module = litert_torch.to_channel_last_io(quantized, args=[0]).eval()
                edge = litert_torch.convert(  # the converter reads its static int8 mode
                    module, (channels_last(image), ),
                    quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
            edge.export(str(path))
    except ExportError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        tail = captured.tail(1) if captured is not None and captured.text else ''
        raise ExportError(f'litert-torch could not convert {type(network).__name__} to '
                          f'{path.name} ({type(e).__name__}: {first}'
                          f'{"; it printed: " + tail if tail else ""}); nothing was written: '
                          f'report this with the config.') from None
    return path
