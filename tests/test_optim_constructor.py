"""MergedGroupsOptimWrapperConstructor: the settings mmengine gives each parameter, in fewer
groups, and the same optimizer steps."""
import copy

import pytest
import torch
from helpers import ROOT
from mmengine.optim import build_optim_wrapper
from torch import nn

from mobileone_dense import apis
from mobileone_dense.engine import MergedGroupsOptimWrapperConstructor, merge_param_groups

PARAMWISE = dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                 custom_keys={'head': dict(lr_mult=10.0)})


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # a conv bias before a batch norm would get a gradient of rounding noise only, which
        # Adam scales up to a full step: no two kernels would agree on it
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.body(x))


def wrapper_cfg(constructor=None, fused=False) -> dict:
    cfg = dict(type='OptimWrapper', paramwise_cfg=PARAMWISE,
               optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05, fused=fused))
    if constructor:
        cfg['constructor'] = constructor
    return cfg


def settings(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    """id(parameter) -> the settings the optimizer applies to it (its group's, over the
    optimizer's defaults), without the fused switch."""
    out = {}
    for group in optimizer.param_groups:
        options = {k: v for k, v in {**optimizer.defaults, **group}.items()
                   if k not in ('params', 'fused', 'foreach')}
        for p in group['params']:
            out[id(p)] = options
    return out


def test_every_parameter_keeps_its_settings_in_fewer_groups():
    model = Toy()
    default = build_optim_wrapper(model, wrapper_cfg()).optimizer
    merged = build_optim_wrapper(
        model, wrapper_cfg('MergedGroupsOptimWrapperConstructor')).optimizer
    assert len(default.param_groups) == len(list(model.parameters())) == 7
    # body weights (decay), body norm and bias (no decay), head (a custom key's settings
    # replace the norm and bias rules, as mmengine applies them)
    assert len(merged.param_groups) == 3
    assert settings(merged) == settings(default)
    merged_order = [id(p) for g in merged.param_groups for p in g['params']]
    assert merged_order != [id(p) for p in model.parameters()]  # regrouped
    assert sorted(merged_order) == sorted(id(p) for p in model.parameters())  # all, once
    head = next(g for g in merged.param_groups if g['params'][0] is model.head.weight)
    assert head['lr'] == pytest.approx(0.1) and head['weight_decay'] == pytest.approx(0.05)


def test_merge_keeps_the_order_of_first_appearance():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [dict(params=[a], lr=1.0), dict(params=[b], lr=2.0), dict(params=[c], lr=1.0),
              dict(params=[d], lr=2.0, weight_decay=0.0)]
    merged = merge_param_groups(groups)
    assert [[id(p) for p in g['params']] for g in merged] == [[id(a), id(c)], [id(b)], [id(d)]]
    assert [g['lr'] for g in merged] == [1.0, 2.0, 2.0]


@pytest.mark.parametrize('fused', [False, True])
def test_merged_groups_take_the_same_steps_as_mmengine_groups(fused):
    torch.manual_seed(0)
    model = Toy()
    twin = copy.deepcopy(model)
    ref = build_optim_wrapper(model, wrapper_cfg())
    ours = build_optim_wrapper(twin, wrapper_cfg('MergedGroupsOptimWrapperConstructor', fused))
    x = torch.randn(2, 3, 12, 12)
    for _ in range(3):
        for m, wrapper in ((model, ref), (twin, ours)):
            wrapper.update_params(m(x).square().mean())
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        if fused:  # the fused kernel rounds differently
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, name=name: f'{name}: {m}')
        else:  # the same per-tensor kernel, group by group: the same bits
            assert torch.equal(q, p), name
    assert not torch.equal(model.head.weight, Toy().head.weight)  # it did train


def test_configs_merge_their_groups():
    """The demo detector and the DeepLabV3 configs (which make one group per tensor without
    it) use the constructor, and PyTorch's per-tensor AdamW: the steps mmengine's groups take,
    bit for bit (the fused kernel rounds differently; see docs/training.md)."""
    for path, groups in (('configs/ssdlite/mobileone_mu0_demo.py', 2),
                         ('configs/deeplabv3/mobileone_mu0_demo.py', 2),
                         ('configs/deeplabv3/mobileone_s0_voc.py', 2)):
        cfg = apis.load_config(ROOT / path)
        assert cfg.optim_wrapper.constructor == MergedGroupsOptimWrapperConstructor.__name__
        optimizer = build_optim_wrapper(apis.build_model(cfg), cfg.optim_wrapper).optimizer
        assert len(optimizer.param_groups) == groups, path
        assert not optimizer.defaults['fused']
