"""Writing a network as a LiteRT (``.tflite``) model with litert-torch, in float32 or with int8
weights and activations (PT2E post-training quantization, calibrated).

The model takes a ``1xHxWx3`` float32 image (channels last, 0..255, channels as mmcv loads
them), with the config's normalisation inside. INT8 quantizes what XNNPACK runs in int8 (every
convolution with its ReLU, additions, pooling) inside the detector or segmentor proper
(the wrapper's ``core``: backbone, neck and head maps); the box decoding, the softmax
and the segmentor's final resize and argmax stay in float32, where 8 bits would cost
accuracy for no speed.
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


def _quantizer(config):
    """litert-torch's PT2E quantizer with ``config`` everywhere, adds included
    (:func:`annotate_adds`)."""
    from litert_torch.quantize import pt2e_quantizer

    class Quantizer(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model):
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
