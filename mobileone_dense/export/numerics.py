"""How far two renderings of one network are apart: test inputs, raw outputs, the agreement
figures and the tolerance they are held to.

Fusion is exact up to float rounding, which grows with depth to ~1e-6 .. 1e-4 relative to the
largest output; a fusion bug (a padding, a bias, a skip kernel) is off by 1e-2 or more. Some
networks amplify float32 rounding more than others (deep heads on random-looking weights by
1e-3 and more), so the tolerance is measured per model (:func:`float_tolerance`), between a
fixed floor (:data:`RTOL`) and a fixed cap (:data:`RTOL_CAP`) that no measurement can raise.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ExportError

#: Smallest tolerance, relative to the largest output value: 5000 float32 ulps.
RTOL = 5000 * torch.finfo(torch.float32).eps
#: Largest tolerance any model gets, however much it amplifies rounding: a fusion bug is
#: off by 1e-2 or more, so 5e-3 still catches one.
RTOL_CAP = 5e-3


def make_image(size: Sequence[int], seed: int = 0) -> Tensor:
    """A reproducible test image: 1x3xHxW float in 0..255, channels as loaded (BGR).

    Smooth blobs plus noise, so that activations look like those of a photo rather than of
    white noise.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    blobs = F.interpolate(torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g),
                          size=(h, w), mode='bilinear', align_corners=False)
    image = 0.8 * blobs + 0.2 * torch.rand(1, 3, h, w, generator=g)
    return (image * 255).round()


def flatten(x) -> list[Tensor]:
    """The tensors of a nested tuple/list of outputs, in order."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in flatten(y)]
    return []


def raw_outputs(model: nn.Module, inputs: Tensor) -> list[Tensor]:
    """The network's outputs before post-processing (detector head maps, segmentor logits)."""
    with torch.no_grad():
        forward = getattr(model, '_forward', model)
        return flatten(forward(inputs))


@dataclass
class Agreement:
    """How far ``actual`` outputs are from ``expected`` ones."""
    max_abs: float
    max_rel: float  # worst over tensors of max |a - e| / max |e|
    normwise: float  # worst over tensors of ||a - e|| / ||e||
    tensors: int
    rtol: float = RTOL

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.rtol and self.normwise <= self.rtol

    def __str__(self) -> str:
        return (f'max abs diff {self.max_abs:.2e}, max rel diff {self.max_rel:.2e} '
                f'(normwise {self.normwise:.2e}) over {self.tensors} output tensors, '
                f'tolerance {self.rtol:.1e}: {"OK" if self.ok else "MISMATCH"}')


def compare(actual: Sequence, expected: Sequence, rtol: float = RTOL) -> Agreement:
    """Compare two lists of output tensors, each relative to its own scale."""
    if len(actual) != len(expected):
        raise ExportError(f'The models give {len(actual)} and {len(expected)} output tensors; '
                          f'they are not the same network.')
    max_abs = max_rel = normwise = 0.0
    tiny = torch.finfo(torch.float32).tiny
    for a, e in zip(actual, expected):
        a, e = torch.as_tensor(a).double(), torch.as_tensor(e).double()
        if a.shape != e.shape:
            raise ExportError(f'Output shapes differ: {tuple(a.shape)} vs {tuple(e.shape)}.')
        if e.numel() == 0:
            continue
        diff = (a - e).abs()
        if not torch.isfinite(diff).all():
            return Agreement(float('inf'), float('inf'), float('inf'), len(expected), rtol)
        max_abs = max(max_abs, diff.max().item())
        max_rel = max(max_rel, diff.max().item() / max(e.abs().max().item(), tiny))
        normwise = max(normwise, diff.norm().item() / max(e.norm().item(), tiny))
    return Agreement(max_abs, max_rel, normwise, len(expected), rtol)


def correlation(actual: Sequence, expected: Sequence) -> float:
    """Pearson correlation of two lists of outputs, all values pooled (1.0: the same up to
    scale and offset); how closely a quantized model follows its float original."""
    a = torch.cat([torch.as_tensor(x).double().flatten() for x in actual])
    e = torch.cat([torch.as_tensor(x).double().flatten() for x in expected])
    if not torch.isfinite(a).all():
        return float('nan')
    a, e = a - a.mean(), e - e.mean()
    denom = (a.norm() * e.norm()).item()
    return float((a @ e).item() / denom) if denom > 0 else float(torch.equal(a, e))


def float_tolerance(model: nn.Module, inputs: Tensor, outputs: Sequence[Tensor],
                    rtol: float = RTOL, cap: float = RTOL_CAP) -> tuple[float, float]:
    """The tolerance for comparing another float32 rendering of ``model`` with ``outputs``.

    We measure the model's own float32 error against a float64 copy of it and allow 8x that
    (the fused model adds the rounding of its fused weights to that of its activations; both
    are of that size), never less than ``rtol`` and never more than ``cap``.

    Returns:
        The tolerance and the measured float32 error (relative, as :class:`Agreement`).
    """
    exact = raw_outputs(copy.deepcopy(model).double(), inputs.double())
    own = compare(outputs, exact)
    noise = max(own.max_rel, own.normwise)
    return min(cap, max(rtol, 8 * noise)), noise


def check_fused(model: nn.Module, fused: nn.Module, inputs: Tensor, rtol: float = RTOL,
                consequence: str = '') -> tuple[Agreement, float]:
    """Compare the fused model's raw outputs with the train-time model's on ``inputs``.

    Returns:
        The agreement (its ``rtol`` is the tolerance used) and the train-time model's own
        float32 error (see :func:`float_tolerance`).

    Raises:
        ExportError: They differ beyond float tolerance (a broken block or checkpoint); the
            sentence says ``consequence`` (e.g. ``', so nothing was written'``) after the
            figures.
    """
    expected = raw_outputs(model, inputs)
    tol, noise = float_tolerance(model, inputs, expected, rtol)
    agreement = compare(raw_outputs(fused, inputs), expected, tol)
    if not agreement.ok:
        raise ExportError(
            f'The fused model differs from the train-time model beyond float tolerance '
            f'(max rel diff {agreement.max_rel:.2e}, normwise {agreement.normwise:.2e} > '
            f'{tol:.1e}){consequence}: the checkpoint or a block is broken (check that its BN '
            f'running statistics are finite and that the config matches the checkpoint).')
    return agreement, noise
