"""An optimizer constructor that gives the optimizer one parameter group per set of settings.

With any ``paramwise_cfg`` (no weight decay on norms and biases, a learning-rate multiplier on a
head), mmengine's ``DefaultOptimWrapperConstructor`` puts every parameter in a group of its own:
413 groups for the demo detector, one per tensor. The settings of most of those groups are the
same, but the optimizer cannot know it: it updates group by group, and PyTorch's
multi-tensor (``foreach``) and ``fused`` kernels then work on one tensor at a time, as its
per-tensor loop does. :class:`MergedGroupsOptimWrapperConstructor` builds the same groups as
mmengine's constructor and then merges the groups whose settings are equal, keeping the
parameters' order; each parameter keeps exactly the learning rate, weight decay and momentum
mmengine gave it, and the schedulers (which scale each group's own initial learning rate)
behave as before; one optimizer step over the merged groups took a fraction of the time
(docs/training.md).

A checkpoint's optimizer state lists its groups, so resuming a run needs the constructor it
started with (a mismatch gets mmengine's "loaded state dict contains a parameter group that
doesn't match" error); loading weights alone is unaffected.
"""
from __future__ import annotations

from typing import Any, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn


def _settings_key(group: dict) -> tuple:
    """A hashable form of a group's settings (everything but its parameters)."""
    return tuple(sorted((k, repr(v)) for k, v in group.items() if k != 'params'))


def merge_param_groups(groups: list[dict]) -> list[dict]:
    """Merge the groups of ``groups`` whose settings are equal, in order of first appearance;
    within a merged group the parameters keep their order."""
    merged: dict[tuple, dict] = {}
    for group in groups:
        key = _settings_key(group)
        if key not in merged:
            merged[key] = dict(group, params=[])
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` with the parameter groups that
    ``paramwise_cfg`` makes merged by equal settings (see the module doc).

    Use it in a config as ``optim_wrapper = dict(constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=..., paramwise_cfg=...)``.
    """

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[Any] = None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix == '':  # the outermost call: every parameter has its group now
            params[:] = merge_param_groups(params)
