"""Loading ImageNet checkpoints: Apple's files as they are, mmpretrain's and timm's converted,
and one clear sentence for files that do not fit."""
import re

import pytest
import torch
from helpers import ROOT, assert_fused_close, calibrate_bn
from reference_apple import AppleMobileOne

from mobileone_dense import reparameterize_model
from mobileone_dense.models import CheckpointMismatchError, MobileOne
from mobileone_dense.models.checkpoint import convert_to_apple, detect_format


def _pretrained(path, **kwargs):
    return dict(type='Pretrained', checkpoint=str(path), **kwargs)


@pytest.fixture
def apple_files(tmp_path):
    """Apple-style raw state_dicts (with the classifier), unfused and fused, of s0."""
    ref = calibrate_bn(AppleMobileOne('s0'))
    unfused = tmp_path / 'mobileone_s0_unfused.pth.tar'
    torch.save(ref.state_dict(), unfused)
    ours = MobileOne('s0')
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if 'linear' not in k})
    # Apple's fused files carry the classifier too.
    fused_sd = {**reparameterize_model(ours).state_dict(),
                'linear.weight': ref.linear.weight.detach(),
                'linear.bias': ref.linear.bias.detach()}
    fused = tmp_path / 'mobileone_s0.pth.tar'
    torch.save(fused_sd, fused)
    return ref, unfused, fused


def test_apple_unfused_file_loads_into_train_time_backbone(apple_files, mmengine_log):
    ref, unfused, _ = apple_files
    model = MobileOne('s0', init_cfg=_pretrained(unfused))
    model.init_weights()
    out = mmengine_log.text
    assert 'left out 2 classifier keys (linear.weight' in out
    assert 'train-time (unfused) apple MobileOne checkpoint' in out
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x)[-1], ref.features(x)[-1])


def test_apple_fused_file_loads_into_deploy_backbone(apple_files):
    ref, _, fused = apple_files
    model = MobileOne('s0', deploy=True, init_cfg=_pretrained(fused))
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    assert_fused_close(model.eval()(x)[-1], ref.features(x)[-1])


def test_fused_file_into_train_time_backbone_is_refused(apple_files):
    _, _, fused = apple_files
    model = MobileOne('s0', init_cfg=_pretrained(fused))
    with pytest.raises(CheckpointMismatchError,
                       match=r'a fused apple MobileOne checkpoint with a 48-channel stem\) does '
                       r'not fit a train-time MobileOne: missing keys \[.stage0\.rbr_conv'):
        model.init_weights()


def test_other_variant_is_refused(apple_files):
    _, unfused, _ = apple_files
    model = MobileOne('s1', init_cfg=_pretrained(unfused))
    with pytest.raises(CheckpointMismatchError, match=r'48-channel stem.*does not fit a '
                       r'train-time MobileOne: .*shape mismatches \[.stage0'):
        model.init_weights()


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(CheckpointMismatchError,
                       match=r'not a MobileOne checkpoint of a known layout \(first keys: '
                       r'conv1.weight\)'):
        MobileOne('s0', init_cfg=_pretrained(path)).init_weights()


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'does not exist: point model\.backbone\.'
                       r'init_cfg\.checkpoint at a MobileOne file, or set'):
        MobileOne('s0', init_cfg=_pretrained(tmp_path / 'nope.pth')).init_weights()


def test_unreachable_url_names_the_fix():
    url = 'http://127.0.0.1:9/mobileone_s0_unfused.pth.tar'  # nothing listens on port 9
    with pytest.raises(ConnectionError, match=r'Could not download the pretrained checkpoint '
                       r'.*set model\.backbone\.init_cfg\.checkpoint to the local path'):
        MobileOne('s0', init_cfg=_pretrained(url)).init_weights()


def test_detector_style_prefix(tmp_path, apple_files):
    ref, _, _ = apple_files
    path = tmp_path / 'detector.pth'
    torch.save({'meta': {}, 'state_dict': {'backbone.' + k: v for k, v in
                                           ref.state_dict().items()}}, path)
    model = MobileOne('s0', init_cfg=_pretrained(path, prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.stage4[0].rbr_conv[2].conv.weight,
                               ref.stage4[0].rbr_conv[2].conv.weight)


# Key names of mmpretrain's MobileOne (mmpretrain/models/backbones/mobileone.py, an
# ImageClassifier checkpoint) and timm's (timm/models/byobnet.py), written out by hand.
MMPRETRAIN_TO_APPLE = {
    'backbone.stage0.branch_conv_list.0.conv.weight': 'stage0.rbr_conv.0.conv.weight',
    'backbone.stage0.branch_scale.norm.running_var': 'stage0.rbr_scale.bn.running_var',
    'backbone.stage1.1.branch_norm.weight': 'stage1.1.rbr_skip.weight',
    'backbone.stage3.12.branch_conv_list.0.norm.bias': 'stage3.12.rbr_conv.0.bn.bias',
    'backbone.stage3.19.se.conv1.conv.weight': 'stage3.19.se.reduce.weight',
    'backbone.stage4.1.se.conv2.conv.bias': 'stage4.1.se.expand.bias',
    'backbone.stage2.0.branch_reparam.weight': 'stage2.0.reparam_conv.weight',
}
TIMM_TO_APPLE = {
    'stem.conv_kxk.0.conv.weight': 'stage0.rbr_conv.0.conv.weight',
    'stem.conv_scale.bn.running_mean': 'stage0.rbr_scale.bn.running_mean',
    'stages.0.1.identity.running_var': 'stage1.1.rbr_skip.running_var',
    'stages.2.12.conv_kxk.0.bn.weight': 'stage3.12.rbr_conv.0.bn.weight',
    'stages.2.19.attn.fc1.weight': 'stage3.19.se.reduce.weight',
    'stages.3.1.attn.fc2.bias': 'stage4.1.se.expand.bias',
    'stages.1.0.reparam_conv.weight': 'stage2.0.reparam_conv.weight',
}


@pytest.mark.parametrize('fmt, table', [('mmpretrain', MMPRETRAIN_TO_APPLE),
                                        ('timm', TIMM_TO_APPLE)])
def test_key_conversion(fmt, table):
    head = {'head.fc.weight': torch.zeros(1)}
    state = {k: torch.zeros(1) for k in table}
    converted, detected, dropped = convert_to_apple({**state, **head})
    assert detected == fmt
    assert sorted(converted) == sorted(table.values())
    assert dropped == ['head.fc.weight']


def _rename(state, table):
    out = {}
    for key, value in state.items():
        for pattern, repl in table:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def test_timm_layout_checkpoint_loads_and_matches(tmp_path):
    """A whole s4 state_dict in timm's naming loads and computes the reference's outputs."""
    ref = calibrate_bn(AppleMobileOne('s4'))
    timm_names = [(r'^stage0\.', 'stem.'),
                  (r'^stage(\d)\.', lambda m: f'stages.{int(m.group(1)) - 1}.'),
                  (r'\.rbr_conv\.', '.conv_kxk.'), (r'\.rbr_scale\.', '.conv_scale.'),
                  (r'\.rbr_skip\.', '.identity.'), (r'\.se\.reduce\.', '.attn.fc1.'),
                  (r'\.se\.expand\.', '.attn.fc2.'), (r'^linear\.', 'head.fc.')]
    state = _rename(ref.state_dict(), timm_names)
    assert detect_format(state) == 'timm'
    path = tmp_path / 'timm_s4.pth'
    torch.save(state, path)
    model = MobileOne('s4', init_cfg=_pretrained(path))
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x)[-1], ref.features(x)[-1])


def test_detector_config_loads_apple_weights_into_its_backbone(apple_files):
    """The configs' init_cfg path: a whole SSDLite detector initialises its backbone from
    Apple's unfused file (here a local one; the configs name Apple's URL)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    _, unfused, _ = apple_files
    cfg = Config.fromfile(str(ROOT / 'configs/ssdlite/mobileone_s0.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(unfused)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    expected = torch.load(unfused)
    for key in ('stage0.rbr_conv.0.conv.weight', 'stage3.9.rbr_skip.running_var',
                'stage4.1.rbr_conv.3.bn.bias'):
        torch.testing.assert_close(detector.backbone.state_dict()[key], expected[key])
