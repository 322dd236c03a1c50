"""Our backbone speaks Apple's checkpoint layout: same keys, same numbers."""
import pytest
import torch
from helpers import DATA, VARIANTS, assert_fused_close, calibrate_bn
from reference_apple import AppleMobileOne

from mobileone_dense import reparameterize_model
from mobileone_dense.models import MobileOne


def _expected_keys(variant, fused):
    path = DATA / 'keys' / f'{variant}_{"fused" if fused else "unfused"}.txt'
    return path.read_text().split()


@pytest.mark.parametrize('fused', (False, True), ids=('unfused', 'fused'))
@pytest.mark.parametrize('variant', VARIANTS)
def test_key_layout_is_apples(variant, fused):
    keys = list(MobileOne(variant, deploy=fused).state_dict())
    assert keys == _expected_keys(variant, fused)


@pytest.mark.parametrize('variant', VARIANTS)
def test_dilation_keeps_the_key_layout(variant):
    model = MobileOne(variant, strides=(2, 2, 2, 1, 1), dilations=(1, 1, 1, 2, 4))
    assert list(model.state_dict()) == _expected_keys(variant, False)


# S0-S4 are checked against outputs of Apple's own code in test_apple_oracle.py (train-time and
# fused outputs, and our fused weights in Apple's inference-mode layout), which also checks the
# restatement in reference_apple.py. The micro variants, which Apple's code lacks, are checked
# against that restatement here.
@pytest.mark.parametrize('variant', ('mu0', 'mu1', 'mu2'))
def test_outputs_match_apple_reference(variant):
    ref = calibrate_bn(AppleMobileOne(variant))
    ours = MobileOne(variant, out_indices=(0, 1, 2, 3, 4)).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith('linear.')}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(ours(x), ref.features(x)):
        torch.testing.assert_close(a, b)
    # Apple's fused (inference_mode) layout takes our fused weights as they are.
    ref_fused = AppleMobileOne(variant, inference_mode=True).eval()
    ref_fused.load_state_dict(reparameterize_model(ours).state_dict(), strict=False)
    for a, b in zip(ref_fused.features(x), ref.features(x)):
        assert_fused_close(a, b)
