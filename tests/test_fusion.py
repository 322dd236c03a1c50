"""Reparameterization is exact: blocks, whole backbones, state_dicts."""
import itertools

import pytest
import torch
from helpers import VARIANTS, assert_fused_close, calibrate_bn, randomize_bn

from mobileone_dense import reparameterize_model
from mobileone_dense.export.numerics import check_fused
from mobileone_dense.models import MobileOne, MobileOneBlock

DTYPES = (torch.float32, torch.float64)


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


BLOCK_GRID = [
    dict(kernel_size=k, stride=s, groups=g, dilation=d, num_conv_branches=b, use_se=se)
    for k, s, g, d, b, se in itertools.product((1, 3), (1, 2), ('dw', 1), (1, 2, 4), (1, 2, 3, 4),
                                              (False, True))
    if not (k == 1 and d > 1)  # dilation has no meaning for a 1x1 kernel
]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('cfg', BLOCK_GRID, ids=lambda c: '-'.join(f'{v}' for v in c.values()))
def test_block_fusion_exact(cfg, dtype):
    cfg = dict(cfg)
    channels = 16
    groups = channels if cfg.pop('groups') == 'dw' else 1
    block = MobileOneBlock(channels, channels, groups=groups, **cfg)
    randomize_bn(block, seed=cfg['num_conv_branches'])
    block = block.to(dtype).eval()
    assert (block.rbr_skip is not None) == (cfg['stride'] == 1)
    assert (block.rbr_scale is not None) == (cfg['kernel_size'] > 1)
    x = torch.randn(2, channels, 17, 17, dtype=dtype)
    expected = block(x)
    block.reparameterize()
    assert block.deployed and block.rbr_conv is None and block.rbr_skip is None
    assert block.reparam_conv.dilation == (cfg['dilation'] if cfg['kernel_size'] > 1 else 1, ) * 2
    torch.testing.assert_close(block(x), expected, **_tol(dtype))


@pytest.mark.parametrize('dtype', DTYPES)
def test_block_changing_channels_fusion(dtype):
    block = randomize_bn(MobileOneBlock(8, 24, 1, num_conv_branches=3)).to(dtype).eval()
    assert block.rbr_skip is None
    x = torch.randn(1, 8, 9, 9, dtype=dtype)
    expected = block(x)
    block.reparameterize()
    torch.testing.assert_close(block(x), expected, **_tol(dtype))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('variant', VARIANTS)
def test_backbone_fusion_exact(variant, dtype):
    model = calibrate_bn(MobileOne(variant, out_indices=(0, 1, 2, 3, 4))).to(dtype)
    x = torch.randn(1, 3, 96, 96, dtype=dtype)
    expected = model(x)
    fused = reparameterize_model(model)
    assert fused.deployed and not model.deployed  # inplace=False keeps the original
    if dtype == torch.float64:  # exact to float64 rounding
        for a, b in zip(fused(x), expected):
            assert_fused_close(a, b)
    else:  # float32: within 8x the model's own float32 rounding, the export's own check
        agreement, noise = check_fused(model, fused, x)
        assert agreement.ok, (agreement, noise)  # its tolerance is capped at RTOL_CAP


@pytest.mark.parametrize('variant', ('s0', 's4'))
@pytest.mark.parametrize('strides, dilations', [
    ((2, 2, 2, 2, 1), (1, 1, 1, 1, 2)),  # output stride 16
    ((2, 2, 2, 1, 1), (1, 1, 1, 2, 4)),  # output stride 8
])
def test_dilated_backbone_fusion_exact(variant, strides, dilations):
    model = MobileOne(variant, strides=strides, dilations=dilations)
    model = calibrate_bn(model).double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    expected = model(x)
    for a, b in zip(reparameterize_model(model)(x), expected):
        assert_fused_close(a, b)


@pytest.mark.parametrize('variant', VARIANTS)
def test_fused_state_dict_loads_strictly_into_deploy_model(variant):
    model = calibrate_bn(MobileOne(variant))
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    fused_sd = reparameterize_model(model).state_dict()
    deploy = MobileOne(variant, deploy=True).eval()
    deploy.load_state_dict(fused_sd, strict=True)
    for a, b in zip(deploy(x), expected):
        assert_fused_close(a, b)


def test_reparameterize_model_is_idempotent_and_inplace():
    model = calibrate_bn(MobileOne('mu1'))
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    model.train()
    same = reparameterize_model(model, inplace=True)
    assert same is model and not model.training and model.deployed
    again = reparameterize_model(model, inplace=True)
    for a, b in zip(again(x), expected):
        assert_fused_close(a, b)


def test_reparameterize_model_walks_any_module_tree_with_syncbn():
    backbone = MobileOne('mu0', norm_cfg=dict(type='SyncBN'), out_indices=(4, ))
    model = torch.nn.Sequential(backbone, torch.nn.Conv2d(384, 5, 1))
    randomize_bn(model)
    model.eval()  # (SyncBN needs a process group to train, so its statistics are made up)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    x = torch.randn(1, 3, 64, 64)
    expected = model[1](model[0](x)[0])
    fused = reparameterize_model(model)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in fused.modules())
    assert_fused_close(fused[1](fused[0](x)[0]), expected)


def test_switch_to_deploy_fuses_in_place():
    model = calibrate_bn(MobileOne('s1'))
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    assert model.switch_to_deploy() is None
    assert model.deployed
    for a, b in zip(model(x), expected):
        assert_fused_close(a, b)
