"""One forward pass with a hook on every ``nn.Conv2d`` call: what counting convolutions (the
Core ML check) and counting their multiply-accumulates (the benchmarks) both need."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def run_with_conv_hook(model: nn.Module, image: Tensor,
                       hook: Callable[[nn.Conv2d, tuple, Tensor], None]) -> None:
    """Run ``model(image)`` without gradients, calling ``hook(conv, inputs, output)`` after every
    ``nn.Conv2d`` it runs; the hooks are removed afterwards, also on an error."""
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for h in handles:
            h.remove()
