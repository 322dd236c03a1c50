"""The Core ML image input: the config's normalisation folded into the input's ``bias`` and
``scale``, and what of it stays in the graph.

The app hands Core ML a picture, already resized (Vision's ``VNCoreMLRequest`` resizes it), and
Core ML gives the network its channels in the order the network expects and applies
``scale * pixel + bias``. What the config's data preprocessor did (:class:`~.graph.Normalize`)
is split between the two (:func:`fold_normalize`):

- the channel order is the image input's colour layout: RGB when the preprocessor swaps mmcv's
  BGR to RGB (``bgr_to_rgb=True``, every config here), else BGR; the graph has no swap;
- the mean goes into the input's per-channel ``bias``;
- the division by std goes into the input's ``scale`` when std is equal across channels, and
  otherwise stays in the graph as one per-channel multiply by ``1 / std`` (Core ML's ``scale``
  is one number for all channels; the configs here use ImageNet's std 58.395/57.12/57.375).

So ``scale * pixel + bias`` then the multiply equals ``(pixel - mean) / std`` in the network's
channel order, exactly as :class:`~.graph.Normalize` computes it on the BGR tensor.

:func:`~.coreml.write_coreml` first folds the swap and the division by std into the first
convolution (:func:`~.graph.fold_normalization`, as the ONNX and LiteRT writers do), so for the
configs here the image input is BGR with ``scale`` 1 and ``bias = -mean``, and nothing of the
normalisation is left in the graph.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from .graph import Normalize


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
    std = ([1.0] * len(mean) if normalize.std is None
           else [float(v) for v in normalize.std.flatten()])
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
