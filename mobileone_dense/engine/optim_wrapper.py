"""bfloat16 mixed-precision training on the CPU, as an mmengine optimizer wrapper.

mmengine 0.10.7's ``AmpOptimWrapper`` refuses a machine without a GPU (it asserts on CUDA, NPU,
MLU or MUSA), so :class:`CPUBF16OptimWrapper` does the CPU's part: the forward pass (data
preprocessing, network and losses) runs under ``torch.autocast('cpu', dtype=torch.bfloat16)``,
the weights, their gradients and the optimizer state stay float32, and the loss is float32
before ``backward``. bfloat16 has float32's exponent range, so no loss scaler is needed.
Validation and testing do not go through the wrapper: mmengine's ``ValLoop`` and ``TestLoop``
autocast only when built with ``fp16=True``, so they run in float32.

Registered in mmengine's root ``OPTIM_WRAPPERS`` on ``import mobileone_dense``; mmdet's and
mmseg's registries search their parent, so ``optim_wrapper = dict(type='CPUBF16OptimWrapper',
optimizer=...)`` works in either library's configs. ``tools/train.py --amp`` picks it when
CUDA is not available.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn
from torch.optim import Optimizer

from ..errors import UsageError
from ..utils.cpu import bf16_instructions


def cpu_bf16_instructions() -> list[str]:
    """The bfloat16 instruction sets of this CPU that PyTorch's oneDNN kernels use; empty when
    the CPU has none (bfloat16 training would then be emulated, and slower than float32).
    oneDNN also accepts bfloat16 on a plain AVX-512 CPU (``_is_mkldnn_bf16_supported()`` is
    True there) but converts to float32 for every operation, which is no faster than float32:
    only the native instruction sets count."""
    if not torch.backends.mkldnn.is_available():
        return []
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return []
    except (AttributeError, RuntimeError):  # the private op moved: the capabilities decide
        pass
    return bf16_instructions()


def require_cpu_bf16(fix: str) -> str:
    """The CPU's bfloat16 instruction sets, joined; one sentence ending in ``fix`` if none.

    Raises:
        UsageError: The CPU has no bfloat16 instructions.
    """
    found = cpu_bf16_instructions()
    if not found:
        raise UsageError(f'This CPU has no bfloat16 instructions (AVX512-BF16 or AMX on x86, '
                         f'BF16 on Arm), so it cannot train in bfloat16: {fix}.')
    return ', '.join(found)


@OPTIM_WRAPPERS.register_module()
class CPUBF16OptimWrapper(OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that runs each training forward pass under
    bfloat16 autocast on the CPU, with float32 master weights and loss and no loss scaler.

    Gradient accumulation and clipping work as in ``OptimWrapper`` (gradients are float32), and
    checkpoints hold the same optimizer state, so a run can resume with or without bfloat16.

    Args:
        optimizer: The optimizer, over float32 parameters.
        accumulative_counts: As in ``OptimWrapper``.
        clip_grad: As in ``OptimWrapper``.
        dtype: ``None`` or ``'bfloat16'``: the CPU autocasts to bfloat16 only.
        loss_scale: Ignored (bfloat16 needs no loss scaling); accepted so that an
            ``AmpOptimWrapper`` config can switch its ``type`` to this wrapper.

    Raises:
        UsageError: The CPU has no bfloat16 instructions, or ``dtype`` is not bfloat16.
    """

    _announced = False

    def __init__(self,
                 optimizer: Optimizer,
                 accumulative_counts: int = 1,
                 clip_grad: Optional[dict] = None,
                 dtype: Union[str, torch.dtype, None] = None,
                 loss_scale: object = None) -> None:
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise UsageError(f'{type(self).__name__} trains in bfloat16 only, not {dtype}: '
                             f'remove optim_wrapper.dtype from the config.')
        self.instructions = require_cpu_bf16(
            "train in float32 (tools/train.py without --amp, or optim_wrapper.type='OptimWrapper'"
            ' in the config)')
        super().__init__(optimizer, accumulative_counts=accumulative_counts,
                         clip_grad=clip_grad)
        self.cast_dtype = torch.bfloat16
        self._device_checked = False
        if not CPUBF16OptimWrapper._announced:  # once per process, not once per wrapper
            CPUBF16OptimWrapper._announced = True
            print_log(f'Training under bfloat16 autocast on the CPU ({self.instructions}): '
                      f'float32 weights, gradients and loss, no loss scaler.', logger='current')

    def _check_device(self, model: nn.Module) -> None:
        """CPU autocast leaves a GPU model in float32: say so instead of training silently."""
        if self._device_checked:
            return
        param = next(model.parameters(), None)
        if param is not None and param.device.type != 'cpu':
            raise UsageError(f'{type(self).__name__} trains on the CPU but the model is on '
                             f'{param.device}: use AmpOptimWrapper there (tools/train.py --amp '
                             f'picks it when CUDA is available).')
        self._device_checked = True

    @contextmanager
    def optim_context(self, model: nn.Module):
        """``OptimWrapper``'s context (no gradient sync while accumulating) under CPU bfloat16
        autocast: mmengine's ``BaseModel.train_step`` preprocesses and computes the losses in
        it."""
        self._check_device(model)
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Back-propagate a float32 loss (a sum of bfloat16 loss terms stays bfloat16)."""
        if loss.dtype != torch.float32:
            loss = loss.float()
        super().backward(loss, **kwargs)

    def load_state_dict(self, state_dict: dict) -> None:
        """Load an optimizer state; an ``AmpOptimWrapper`` checkpoint's loss scaler is
        dropped (bfloat16 has none)."""
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)
