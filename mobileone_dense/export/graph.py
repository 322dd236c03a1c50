"""The pieces every exported graph starts with: the data preprocessor's normalisation as graph
ops (:class:`Normalize`), its folding into the first convolution (:func:`fold_normalization`),
and :class:`NetworkCore`, the part of a network that INT8 export quantizes. The task adapters
(:mod:`mobileone_dense.tasks`) build their networks on them."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .numerics import RTOL_CAP, compare, flatten


class Normalize(nn.Module):
    """The data preprocessor's channel swap and normalization, as graph ops.

    ``std`` is None once :func:`fold_normalization` has moved the division into the first
    convolution: then only ``image - mean`` is left."""

    def __init__(self, data_preprocessor: nn.Module, rgb_input: bool = False) -> None:
        super().__init__()
        # mmdet's DetDataPreprocessor (mmengine) and mmseg's SegDataPreProcessor name it apart.
        to_rgb = bool(getattr(data_preprocessor, '_channel_conversion', False)
                      or getattr(data_preprocessor, 'channel_conversion', False))
        # The model wants RGB (to_rgb) or BGR; the image comes as mmcv loads it (BGR) or, for
        # the files apps run, RGB: swap where the two differ.
        self.swap = to_rgb != rgb_input
        enabled = getattr(data_preprocessor, '_enable_normalize', False)
        mean = data_preprocessor.mean if enabled else torch.zeros(3, 1, 1)
        std = data_preprocessor.std if enabled else torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.detach().clone().view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', std.detach().clone().view(1, -1, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if self.swap:
            image = image.flip(1)
        image = image - self.mean
        return image if self.std is None else image / self.std


def fold_normalization(network: nn.Module, image: Tensor) -> nn.Module:
    """``network`` with the BGR->RGB swap and the division by ``std`` of its
    :class:`Normalize` folded into the first convolution (its input channels reversed and
    divided by ``std``, the mean reordered to match): the same function with ``image - mean``
    left of the normalisation.

    Both ops pass through the convolution's zero padding (a reordered or rescaled zero is zero);
    the mean does not (the padding is zero after the subtraction), so it stays. The fold spares
    LiteRT a channel reversal outside XNNPACK and the INT8 model a full float pass over the
    image before its input quantization.

    Returns a folded deep copy, or ``network`` itself when there is nothing to fold or the fold
    does not hold: no :class:`Normalize` that swaps or divides, the normalised image feeds
    anything but one ungrouped 3-channel ``Conv2d``, or the outputs on ``image`` (a
    ``1x3xHxW`` 0..255 image) differ beyond float rounding (:data:`~.numerics.RTOL_CAP`).
    """
    found = [name for name, m in network.named_modules() if isinstance(m, Normalize)]
    if len(found) != 1:
        return network
    normalize = network.get_submodule(found[0])
    if not normalize.swap and normalize.std is None:
        return network
    # One pass of the original network gives its outputs and the modules the normalised
    # image enters; only a foldable network is copied.
    consumers: list[str] = []
    normalized: dict[str, Tensor] = {}

    def on_normalized(module, inputs, output):
        normalized['image'] = output

    def on_input(name):
        def hook(module, inputs):
            if any(x is normalized.get('image') for x in inputs):
                consumers.append(name)
        return hook

    leaves = [(n, m) for n, m in network.named_modules() if not list(m.children())
              and not isinstance(m, Normalize)]
    handles = [normalize.register_forward_hook(on_normalized)]
    handles += [m.register_forward_pre_hook(on_input(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            expected = [t for t in flatten(network(image)) if t.is_floating_point()]
    finally:
        for handle in handles:
            handle.remove()
    conv = network.get_submodule(consumers[0]) if len(consumers) == 1 else None
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.in_channels == 3):
        return network
    folded = copy.deepcopy(network).eval()
    conv, normalize = folded.get_submodule(consumers[0]), folded.get_submodule(found[0])
    order = (lambda t: t.flip(1)) if normalize.swap else (lambda t: t)  # noqa: E731
    with torch.no_grad():
        weight = order(conv.weight)
        if normalize.std is not None:
            weight = weight / order(normalize.std)
        conv.weight.copy_(weight)
    normalize.mean = order(normalize.mean)
    normalize.swap = False
    normalize.std = None
    with torch.no_grad():
        actual = [t for t in flatten(folded(image)) if t.is_floating_point()]
    return folded if compare(actual, expected, RTOL_CAP).ok else network


class NetworkCore(nn.Module):
    """Normalisation, backbone, neck and head up to the head's raw maps: the part of a network
    that INT8 export quantizes (:func:`~.litert.quantize_pt2e` replaces a wrapper's ``core``
    with its quantized graph); what follows it (box decoding, softmax, resize, argmax) stays
    float."""

    def __init__(self, model: nn.Module, head: str, rgb_input: bool = False) -> None:
        super().__init__()
        self.model = model
        self.normalize = Normalize(model.data_preprocessor, rgb_input)
        self.head = head

    def forward(self, image: Tensor):
        return getattr(self.model, self.head)(self.model.extract_feat(self.normalize(image)))
