"""Writing a network as a Core ML ML program (``.mlpackage``) with coremltools, then checking
the written program.

The network (:meth:`~mobileone_dense.tasks.base.Task.network`) is exported with
``torch.export`` and converted to an ML program, FP16 weights and compute by default
(``precision='fp32'`` keeps float32). Its input ``image`` is a Core ML *image* of the export
size (``1x3xHxW``): the app hands Core ML a picture (Vision resizes it) and Core ML gives the
network its channels in the input's colour layout, computing ``scale * pixel + bias``. The
writers fold the channel swap and the division by std into the first convolution
(:func:`~.graph.fold_normalization`), which leaves ``image - mean`` on BGR pixels: exactly a BGR
image input with ``bias = -mean`` (:func:`image_graph`), so no op of the normalisation stays in
the program. :func:`export_coreml` then checks the written program (:mod:`.coreml_check`),
since Core ML cannot run it on Linux.

A detector, given its NMS (``nms``), becomes a pipeline of that program and Core ML's NMS model,
which Vision turns into recognised objects (:mod:`.coreml_pipeline`); a segmentor declares its
class map alone (``output_names`` with None for the logits), the one output an app reads.
"""
from __future__ import annotations

import contextlib
import copy
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..utils.capture import captured_output
from .coreml_check import count_convs, import_coremltools, inspect_coreml
from .coreml_pipeline import RAW, VisionBoxes, VisionNMS, make_vision_pipeline
from .graph import Normalize, fold_normalization

#: The precisions :func:`write_coreml` writes: weights and compute in FP16 (Core ML's default,
#: what the Neural Engine runs) or float32.
PRECISIONS = ('fp16', 'fp32')
#: The oldest OS that runs the program: ML programs came with iOS 15 / macOS 12.
DEPLOYMENT_TARGET = 'iOS15'
#: What a segmentor's Core ML model declares: its class map, without the logits.
SEGMENTOR_OUTPUTS = (None, 'class_map')


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


@dataclass
class ImageInput:
    """Core ML's image input: the channel order it hands the network and ``scale * pixel +
    bias`` per channel."""
    color_layout: str = 'BGR'
    scale: float = 1.0
    bias: list = field(default_factory=lambda: [0.0, 0.0, 0.0])


def image_graph(network: nn.Module, image: Tensor) -> tuple[nn.Module, ImageInput]:
    """What Core ML converts, and its image input: ``network`` with the swap and the division
    by std folded into the first convolution and ``image - mean`` moved into the input's bias.
    Where the fold does not apply (the normalised image feeds more than one convolution), the
    whole normalisation stays in the graph and the input passes the pixels as they are."""
    network = fold_normalization(network.eval(), image)
    normalize = getattr(getattr(network, 'core', None), 'normalize', None)
    if not isinstance(normalize, Normalize) or normalize.swap or normalize.std is not None:
        return network, ImageInput()
    core = copy.copy(network.core)  # shares every module but the normalisation
    core._modules = dict(network.core._modules)
    core.normalize = nn.Identity()
    graph = copy.copy(network)
    graph._modules = dict(network._modules)
    graph.core = core
    return graph.eval(), ImageInput('BGR', 1.0, [-float(m) for m in normalize.mean.flatten()])


class _Outputs(nn.Module):
    """The outputs of ``network`` at ``keep``, in that order."""

    def __init__(self, network: nn.Module, keep: Sequence[int]) -> None:
        super().__init__()
        self.network, self.keep = network, list(keep)

    def forward(self, image: Tensor) -> tuple:
        outputs = self.network(image)
        return tuple(outputs[i] for i in self.keep)


def write_coreml(network: nn.Module, image: Tensor, path: str | Path, precision: str = 'fp16',
                 output_names: Sequence[Optional[str]] = ('output', ),
                 log: Callable[[str], None] = print, nms: Optional[VisionNMS] = None) -> Path:
    """Convert ``network`` (``1x3xHxW`` BGR 0..255 image in, a tensor or tuple of tensors out)
    to an ML program at ``path`` (a ``.mlpackage`` folder, replaced if it exists), or with
    ``nms`` to a Vision pipeline of the program and its NMS.

    Args:
        network: The fused network (:meth:`Task.network`), in eval mode.
        image: An example input; its shape is the model's input shape.
        path: Where the ``.mlpackage`` goes.
        precision: ``'fp16'`` (weights and compute) or ``'fp32'``.
        output_names: The names of the network's outputs, in order; None leaves that output
            out of the model (:data:`SEGMENTOR_OUTPUTS`). Unused with ``nms``.
        log: Where the progress lines go (the converter's own output is kept out of it).
        nms: A detector's NMS (:func:`~.coreml_pipeline.vision_nms`): ``network`` gives
            ``boxes`` and ``scores`` (``DetectorNetwork``), which the program turns into
            Vision's (:class:`~.coreml_pipeline.VisionBoxes`), and the package holds the
            pipeline (:func:`~.coreml_pipeline.make_vision_pipeline`).

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
    ct = import_coremltools()
    graph, folding = image_graph(network, image)
    name = type(network).__name__
    shape = tuple(image.shape)
    if nms is not None:
        graph, output_names = VisionBoxes(graph, shape[2:]).eval(), RAW
    elif None in output_names:
        graph = _Outputs(graph, [i for i, n in enumerate(output_names) if n]).eval()
        output_names = [n for n in output_names if n]
    stage = 'torch.export'
    captured = None
    try:
        log(f'Core ML: exporting {name} ({shape[2]}x{shape[3]}) with torch.export ...')
        start = time.perf_counter()
        with captured_output() as captured, torch.no_grad(), _quiet():
            program = torch.export.export(graph, (image, )).run_decompositions({})
        stage = 'coremltools'
        log(f'Core ML: converting to an ML program ({precision})'
            f'{" and a pipeline with NMS" if nms else ""} ...')
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
            if nms is not None:
                stage = 'pipeline'
                model = make_vision_pipeline(ct, model, nms)
            _describe(model, folding, shape, precision, nms)
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
                'pipeline': 'coremltools could not make the Vision pipeline of',
                'saving': 'coremltools could not save'}[stage]
        raise ExportError(f'{what} {name} for {path.name} ({type(e).__name__}: {message}); '
                          f'nothing was written: report this with the config.') from None
    log(f'Core ML: wrote {path.name} in {time.perf_counter() - start:.0f} s')
    return path


def _describe(model, folding: ImageInput, shape: Sequence[int], precision: str,
              nms: Optional[VisionNMS]) -> None:
    """The descriptions Xcode shows for the model and its input."""
    what = ('MobileOne detector (mobileone_dense) with class-wise NMS, for Vision' if nms
            else 'MobileOne network (mobileone_dense)')
    model.short_description = f'{what}, {precision}, {shape[2]}x{shape[3]} image input'
    model.input_description['image'] = (
        f'{folding.color_layout} image of exactly {shape[3]}x{shape[2]} (W x H), resized as '
        f'the config test pipeline resizes; normalisation is inside')
    if SEGMENTOR_OUTPUTS[1] in model.output_description:
        model.output_description[SEGMENTOR_OUTPUTS[1]] = 'class index of every pixel (1xHxW)'
    meta = model.user_defined_metadata
    meta['mobileone_dense.color_layout'] = folding.color_layout
    short = lambda v: None if v is None else [float(f'{x:.7g}') for x in v]  # noqa: E731
    meta['mobileone_dense.input_scale'] = f'{folding.scale:.7g}'
    meta['mobileone_dense.input_bias'] = str(short(folding.bias))
    meta['mobileone_dense.precision'] = precision


# ------------------------------------------------------------------------------ and checking
def export_coreml(network: nn.Module, image: Tensor, path: str | Path, precision: str = 'fp16',
                  output_names: Sequence[Optional[str]] = ('output', ),
                  log: Callable[[str], None] = print, nms: Optional[VisionNMS] = None) -> dict:
    """:func:`write_coreml`, then :func:`~.coreml_check.inspect_coreml` against the convolutions
    ``network`` runs (:func:`~.coreml_check.count_convs`), the input size and ``nms``, with the
    finding logged (:func:`~.coreml_check.describe`).

    Returns the check's report. Raises ExportError (and removes the package) when the model
    fails the check.
    """
    path = write_coreml(network, image, path, precision, output_names, log, nms)
    report = inspect_coreml(path, count_convs(network, image), tuple(image.shape[2:]), nms)
    log(report['text'])
    if not report['ok']:
        shutil.rmtree(path, ignore_errors=True)
        problems = '; '.join(report['problems'])
        raise ExportError(f'The Core ML model fails its check ({problems}), so nothing was '
                          f'written: convert the fused network (reparameterize_model); if it was '
                          f'fused, report this with the config.')
    return report
