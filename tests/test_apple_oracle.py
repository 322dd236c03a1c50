"""Our backbone against outputs of Apple's own ``mobileone.py`` (apple/ml-mobileone), S0-S4.

``data/apple_oracle/apple_mobileone_reference.npz`` was computed by Apple's code, not by this
project; ``data/apple_oracle/README.md`` spells out the weights. Both networks see the same
weights only if they have the same state_dict keys, shapes and sorted order, because every
tensor is drawn in turn from one generator: an extra, missing or reshaped key shifts the draws
of every key after it (the negative tests below show that such a shift is caught).

The micro variants mu0-mu2 are not in Apple's code; ``test_apple_layout.py`` checks them
against the restatement in ``reference_apple.py``, which is itself checked here against the
oracle for S0-S4.
"""
import math

import numpy as np
import pytest
import torch
from helpers import DATA
from reference_apple import AppleMobileOne

from mobileone_dense import reparameterize_model
from mobileone_dense.models import MobileOne

ORACLE = DATA / 'apple_oracle' / 'apple_mobileone_reference.npz'
ORACLE_VARIANTS = ('s0', 's1', 's2', 's3', 's4')
STAGES = (1, 2, 3, 4)

# Tolerance. The oracle arrays are float64 results rounded to float32, so a correct float64
# output differs from them by (a) the rounding to float32, at most 2**-24 of the value
# (round to nearest; relative to the rounded value 2**-24 / (1 - 2**-24) < 6e-8), plus (b) the
# float64 rounding by which two correct implementations differ (summation order, BN folding).
# (b) grows with depth and is large relative to values that cancel to near zero, so it is
# bounded in absolute terms against the stage's largest value: 5000 float64 epsilons (1.1e-12,
# the same budget as conftest.assert_fused_close). Random weights make activations grow to
# ~1e12 by stage 4, which is why atol scales with each stage; atol also covers values below
# float32's normal range (S4's saturated squeeze-excite gates make some ~1e-84, stored as 0),
# where rounding is absolute. A wrong weight, padding, branch or skip changes outputs by 1e-2
# relative or more. Measured: rounded to float32, our outputs equal every stored value, but
# for one S4 fused stage3 value on a rounding boundary (the stored train and fused arrays
# differ there too); (b) stayed below 1e-50 of the stage maximum.
RTOL = 6e-8
ATOL_REL = 5000 * torch.finfo(torch.float64).eps


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    # In float64 a depthwise conv runs as one small convolution per channel (thousands per
    # network); with the intra-op thread pool on a busy 2-core machine the forward passes were
    # 10-40x slower (S3: 18 s instead of 0.5 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def oracle():
    with np.load(ORACLE) as npz:
        return {k: torch.from_numpy(npz[k]) for k in npz.files}


def recipe_state(model: torch.nn.Module, variant: str) -> dict:
    """The oracle README's weights for the state_dict keys of ``model``: one generator seeded
    1000 + variant index, keys in sorted order, no ``num_batches_tracked`` (nor ``linear.*``,
    the classifier of Apple's network), float64."""
    return draw(_shapes(model), _generator(variant))


def _shapes(model: torch.nn.Module) -> dict:
    return {k: v.shape for k, v in model.state_dict().items()
            if not k.endswith('num_batches_tracked') and not k.startswith('linear.')}


def _generator(variant: str) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + ORACLE_VARIANTS.index(variant))


def draw(shapes: dict, g: torch.Generator, order=sorted) -> dict:
    """The README's three rules, drawing for the keys of ``shapes`` in ``order``."""
    state = {}
    for key in order(shapes):
        shape = shapes[key]
        if len(shape) == 4:  # conv weight (o, i, kh, kw)
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
        elif key.endswith('running_var') or key.endswith('.weight'):  # BN variance, BN gamma
            state[key] = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        else:  # running_mean, BN beta, SE conv biases
            state[key] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.1
    return state


def build(variant: str, state: dict) -> MobileOne:
    model = MobileOne(variant, out_indices=STAGES).double().eval()
    model.load_state_dict({**model.state_dict(), **state}, strict=True)
    return model


def check_stage(out, oracle, variant, mode, j):
    """Assert the output of stage ``j`` against ``{variant}/{mode}/stage{j}``."""
    expected = oracle[f'{variant}/{mode}/stage{j}'].double()
    torch.testing.assert_close(out, expected, rtol=RTOL,
                               atol=ATOL_REL * expected.abs().max().item(),
                               msg=lambda m: f'{variant} {mode} stage{j}: {m}')


def compare(outs, oracle, variant, mode):
    assert len(outs) == len(STAGES)
    for j, out in zip(STAGES, outs):
        check_stage(out, oracle, variant, mode, j)


def mismatched_stages(outs, oracle, variant, mode='train'):
    """The stages whose output fails :func:`check_stage`."""
    bad = []
    for j, out in zip(STAGES, outs):
        try:
            check_stage(out, oracle, variant, mode, j)
        except AssertionError:
            bad.append(j)
    return bad


def run(model, oracle):
    with torch.no_grad():
        return model(oracle['input'])


@pytest.mark.parametrize('variant', ORACLE_VARIANTS)
def test_backbone_matches_apple(variant, oracle):
    model = build(variant, recipe_state(MobileOne(variant), variant))
    compare(run(model, oracle), oracle, variant, 'train')
    fused = reparameterize_model(model)
    assert fused.deployed
    compare(run(fused, oracle), oracle, variant, 'fused')


def test_oracle_input_and_shapes(oracle):
    x = oracle['input']
    assert x.dtype == torch.float64 and x.shape == (2, 3, 64, 64)
    for variant in ORACLE_VARIANTS:
        channels = MobileOne(variant).channels[1:]
        for j, c in zip(STAGES, channels):
            size = 64 >> (j + 1)
            for mode in ('train', 'fused'):
                assert oracle[f'{variant}/{mode}/stage{j}'].shape == (2, c, size, size)


# The comparison can fail: the same recipe with one value changed, or walked over a different
# key set or in another order, no longer matches. A backbone whose keys or shapes differed from
# Apple's would be in the position of these perturbed recipes.
def test_perturbed_value_breaks_the_match(oracle):
    state = recipe_state(MobileOne('s0'), 's0')
    key = 'stage0.rbr_conv.0.bn.running_mean'
    state[key] = state[key] + 0.1
    assert mismatched_stages(run(build('s0', state), oracle), oracle, 's0') == list(STAGES)


def test_missing_key_breaks_the_match(oracle):
    # Leaving the first key out of the walk shifts every draw (the key keeps its default
    # initialization).
    shapes = _shapes(MobileOne('s0'))
    del shapes[sorted(shapes)[0]]
    state = draw(shapes, _generator('s0'))
    assert mismatched_stages(run(build('s0', state), oracle), oracle, 's0') == list(STAGES)


def test_extra_key_breaks_the_match(oracle):
    # A skip BN on the stride-2 block that opens stage3, which Apple's network does not have:
    # its four keys shift the draws of every key sorted after them, so stage3 and stage4 no
    # longer match while stage1 and stage2 still do.
    model = MobileOne('s4')
    shapes, channels = _shapes(model), model.channels[2]
    extra = [f'stage3.0.rbr_skip.{n}' for n in ('weight', 'bias', 'running_mean', 'running_var')]
    shapes.update({k: torch.Size([channels]) for k in extra})
    state = draw(shapes, _generator('s4'))
    for k in extra:
        del state[k]
    assert mismatched_stages(run(build('s4', state), oracle), oracle, 's4') == [3, 4]


def test_unsorted_walk_breaks_the_match(oracle):
    state = draw(_shapes(MobileOne('s1')), _generator('s1'), order=list)  # module order
    assert mismatched_stages(run(build('s1', state), oracle), oracle, 's1') == list(STAGES)


# The restatement in reference_apple.py, which test_apple_layout.py and test_checkpoint.py rely
# on (and the only reference for mu0-mu2), reproduces Apple's outputs for S0-S4.
@pytest.mark.parametrize('variant', ORACLE_VARIANTS)
def test_restatement_matches_apple(variant, oracle):
    ref = AppleMobileOne(variant).double().eval()
    state = recipe_state(ref, variant)
    ref.load_state_dict({**ref.state_dict(), **state}, strict=True)
    with torch.no_grad():
        outs = ref.features(oracle['input'])[1:]
    compare(outs, oracle, variant, 'train')


# Our fused weights load as they are into Apple's inference-mode layout (names and shapes) and
# give Apple's fused outputs there.
@pytest.mark.parametrize('variant', ORACLE_VARIANTS)
def test_fused_weights_load_into_apple_inference_layout(variant, oracle):
    fused = reparameterize_model(build(variant, recipe_state(MobileOne(variant), variant)))
    ref = AppleMobileOne(variant, inference_mode=True).double().eval()
    result = ref.load_state_dict(fused.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ['linear.bias', 'linear.weight']
    assert result.unexpected_keys == []
    with torch.no_grad():
        outs = ref.features(oracle['input'])[1:]
    compare(outs, oracle, variant, 'fused')
