import importlib

import pytest
import torch
from helpers import randomize_bn
from torch.nn.modules.batchnorm import _BatchNorm

import mobileone_dense
from mobileone_dense.models import MobileOne, stage_channels


@pytest.mark.parametrize('variant', ('s0', 's2', 'mu1'))
@pytest.mark.parametrize('index', (0, 1, 2, 3, 4))
def test_shapes_and_channels_per_out_index(variant, index):
    model = MobileOne(variant, out_indices=(index, )).eval()
    (out, ) = model(torch.rand(1, 3, 128, 96))
    stride = 2**(index + 1)
    assert out.shape == (1, stage_channels(variant, (index, ))[0], 128 // stride, 96 // stride)


@pytest.mark.parametrize('strides, dilations, output_stride', [
    ((2, 2, 2, 2, 2), (1, 1, 1, 1, 1), 32),
    ((2, 2, 2, 2, 1), (1, 1, 1, 1, 2), 16),
    ((2, 2, 2, 1, 1), (1, 1, 1, 2, 4), 8),
])
def test_output_stride(strides, dilations, output_stride):
    model = MobileOne('s0', out_indices=(3, 4), strides=strides, dilations=dilations).eval()
    c3, c4 = model(torch.rand(1, 3, 128, 128))
    assert c4.shape[-2:] == (128 // output_stride, ) * 2
    assert c3.shape[-2:] == (128 // min(16, output_stride * (2 if strides[4] == 2 else 1)), ) * 2


def test_dilation_reaches_every_kxk_branch():
    model = MobileOne('s0', strides=(2, 2, 2, 1, 1), dilations=(1, 1, 1, 2, 4))
    first = model.stage3[0]
    assert first.rbr_skip is None  # the stride replaced by dilation adds no skip branch
    assert all(b.conv.dilation == (2, 2) and b.conv.padding == (2, 2) for b in first.rbr_conv)
    assert model.stage4[0].rbr_conv[0].conv.dilation == (4, 4)
    assert model.stage4[1].rbr_conv[0].conv.dilation == (1, 1)  # pointwise
    model.switch_to_deploy()
    assert model.stage3[2].reparam_conv.dilation == (2, 2)
    assert model.stage3[2].reparam_conv.padding == (2, 2)
    deploy = MobileOne('s0', strides=(2, 2, 2, 1, 1), dilations=(1, 1, 1, 2, 4), deploy=True)
    assert deploy.stage4[0].reparam_conv.dilation == (4, 4)


def test_se_only_on_s4_last_pairs():
    model = MobileOne('s4')
    se = [name for name, m in model.named_modules() if name.endswith('.se')
          and not isinstance(m, torch.nn.Identity)]
    assert se == [f'stage3.{i}.se' for i in range(10, 20)] + ['stage4.0.se', 'stage4.1.se']
    assert model.stage3[19].se.reduce.out_channels == int(896 * 0.0625)
    assert not any(m.se.__class__.__name__ == 'SEBlock' for m in MobileOne('s3').stage4)


@pytest.mark.parametrize('frozen_stages', (-1, 0, 2, 4))
def test_frozen_stages(frozen_stages):
    model = MobileOne('mu0', frozen_stages=frozen_stages).train()
    for i, stage in enumerate(model.stages):
        frozen = i <= frozen_stages
        assert all(p.requires_grad != frozen for p in stage.parameters())
        assert all(m.training != frozen for m in stage.modules())


def test_frozen_stage_statistics_do_not_move():
    model = randomize_bn(MobileOne('mu0', frozen_stages=1)).train()
    frozen = model.stage1[0].rbr_conv[0].bn.running_mean.clone()
    trained = model.stage2[0].rbr_conv[0].bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(model.stage1[0].rbr_conv[0].bn.running_mean, frozen)
    assert not torch.equal(model.stage2[0].rbr_conv[0].bn.running_mean, trained)


def test_norm_eval_keeps_bn_in_eval_mode():
    model = MobileOne('mu0', norm_eval=True)
    assert model.train() is model
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert model.stage2.training  # the rest trains
    assert model.eval() is model
    trained = MobileOne('mu0', norm_eval=False).train()
    assert all(m.training for m in trained.modules() if isinstance(m, _BatchNorm))


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = MobileOne('mu0', out_indices=(4, )).train()
    ckpt = MobileOne('mu0', out_indices=(4, ), with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    plain(x)[0].sum().backward()
    ckpt(x)[0].sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


@pytest.mark.parametrize('scope', ('mmdet', 'mmseg'))
def test_build_through_registry(scope):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='MobileOne', arch='mu0', out_indices=(4, )))
    assert isinstance(model, MobileOne)
    assert scope in mobileone_dense.REGISTERED_SCOPES


def test_importing_twice_is_harmless():
    importlib.reload(mobileone_dense)
    from mmdet.registry import MODELS
    assert MODELS.get('MobileOne').__name__ == 'MobileOne'


def test_custom_imports_in_a_config(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("custom_imports = dict(imports=['mobileone_dense'], "
                        "allow_failed_imports=False)\n"
                        "model = dict(type='MobileOne', arch='mu2')\n")
    cfg = Config.fromfile(str(cfg_file))
    from mmseg.registry import MODELS
    assert isinstance(MODELS.build(cfg.model), MobileOne)


def test_registration_works_with_only_one_library(monkeypatch):
    import mobileone_dense.registry as reg
    real_import = importlib.import_module

    def without_mmdet(name, *args):
        if name.startswith('mmdet'):
            raise ImportError(f'No module named {name!r}')
        return real_import(name, *args)

    monkeypatch.setattr(reg.importlib, 'import_module', without_mmdet)
    assert reg.register_all() == ['mmseg']
