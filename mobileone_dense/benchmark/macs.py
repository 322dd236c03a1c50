"""Counting multiply-accumulates: every one that runs (ptflops) and those that touch the image
rather than a convolution's zero padding."""
from __future__ import annotations

import os

import torch
from torch import nn

from ..utils.conv_hooks import run_with_conv_hook


class _Call(nn.Module):
    """``forward(x)`` for ptflops' input_constructor (it passes keyword arguments)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model(x)


def count_macs(model: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of ``model(image)``, counted by ptflops' aten backend (every
    convolution and matmul that actually runs)."""
    from ptflops import get_model_complexity_info
    with open(os.devnull, 'w') as devnull:
        macs, _ = get_model_complexity_info(
            _Call(model), tuple(image.shape[1:]), as_strings=False, print_per_layer_stat=False,
            backend='aten', input_constructor=lambda _: dict(x=image.clone()), ost=devnull)
    if macs is None:
        raise RuntimeError(f'ptflops could not count the MACs of {type(model).__name__}.')
    model.eval()
    return int(macs)


def _taps_inside(n_in: int, n_out: int, kernel: int, stride: int, padding: int,
                 dilation: int) -> int:
    """(output position, kernel tap) pairs of one axis whose input index is inside the input."""
    idx = (torch.arange(n_out)[:, None] * stride - padding
           + torch.arange(kernel)[None, :] * dilation)
    return int(((idx >= 0) & (idx < n_in)).sum())


def count_image_macs(model: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of the convolutions that touch the input, not its zero padding.

    ptflops counts every tap of every kernel. A dilated convolution on a small map has many
    taps in the padding (DeepLabV3's ASPP, dilations 12/24/36 on a 64x64 map at 512x512 input:
    a quarter of the whole segmentor's MACs), and ONNX Runtime's kernels skip them. This is the
    work a runtime cannot skip.
    """
    total = 0

    def hook(conv: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        if isinstance(conv.padding, str):  # 'same' / 'valid': fall back to every tap
            total += output.numel() * conv.weight[0].numel()
            return
        x = inputs[0]
        taps = 1
        for axis in (0, 1):
            taps *= _taps_inside(x.shape[2 + axis], output.shape[2 + axis],
                                 conv.kernel_size[axis], conv.stride[axis],
                                 conv.padding[axis], conv.dilation[axis])
        total += output.shape[0] * taps * conv.out_channels * (conv.in_channels // conv.groups)

    run_with_conv_hook(model, image, hook)
    return total
