import logging
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

sys.path.insert(0, str(Path(__file__).resolve().parent))
VARIANTS = ('s0', 's1', 's2', 's3', 's4', 'mu0', 'mu1', 'mu2')
DATA = Path(__file__).resolve().parent / 'data'
ROOT = Path(__file__).resolve().parents[1]


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN random running statistics and affine parameters (a fresh BN hides
    fusion bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.randn(n, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model


def calibrate_bn(model: torch.nn.Module, seed: int = 0, size: int = 64) -> torch.nn.Module:
    """Random BN affine parameters, then running statistics measured on random images.

    Whole networks with made-up statistics blow activations up by orders of magnitude over 40
    blocks, which drowns any comparison in rounding; measured statistics keep them at the
    scale of a trained network while still being far from a fresh BN's (0, 1).
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, size, size, generator=g))
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def assert_fused_close(actual: torch.Tensor, expected: torch.Tensor, ulps: float = 5000) -> None:
    """Whole-network comparison, exact up to float rounding.

    Over 20-40 layers rounding grows with depth, so elementwise relative checks fail on values
    that cancel out; we bound the normwise relative error and the largest deviation relative to
    the largest value, both by ``ulps`` units of the dtype's epsilon (6e-4 in float32, 1e-12
    in float64). A real fusion bug (a padding, a bias, a skip kernel) is off by 1e-2 or more.
    """
    tol = ulps * torch.finfo(expected.dtype).eps
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    normwise = ((actual - expected).norm() / expected.norm()).item()
    peak = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert normwise <= tol and peak <= tol, (
        f'fused output differs: normwise {normwise:.2e}, peak {peak:.2e} > {tol:.1e}')


class LogCapture(logging.Handler):
    """Collects what mmengine's logger prints (its stream handler holds the original stdout,
    out of pytest's reach)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    @property
    def text(self):
        return '\n'.join(self.messages)


@pytest.fixture
def mmengine_log():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    handler = LogCapture()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
