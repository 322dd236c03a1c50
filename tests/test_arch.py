import pytest
import torch
from helpers import VARIANTS

from mobileone_dense.models import ARCHS, MobileOne, MobileOneArch, get_arch, stage_channels

# Parameters at inference with a 1000-class head, paper Table 9 and supplementary Table 4.
PAPER_PARAMS_M = dict(s0=2.1, s1=4.8, s2=7.8, s3=10.1, s4=14.8, mu0=0.57, mu1=0.98, mu2=1.3)


def test_arch_table_holds_the_papers_variants():
    """The one variant list of the package (benchmarks and configs read it) is the paper's."""
    from mobileone_dense.apis import PAPER_VARIANTS
    from mobileone_dense.apis import VARIANTS as PACKAGE_VARIANTS
    assert tuple(ARCHS) == PACKAGE_VARIANTS == VARIANTS
    assert PAPER_VARIANTS == ('s0', 's1', 's2', 's3', 's4')


@pytest.mark.parametrize('variant', VARIANTS)
def test_fused_params_match_paper(variant):
    model = MobileOne(variant, deploy=True)
    head = torch.nn.Linear(model.channels[-1], 1000)
    n = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in head.parameters())
    assert abs(n / 1e6 - PAPER_PARAMS_M[variant]) <= 0.03 * PAPER_PARAMS_M[variant], n


def test_channels_per_stage():
    # Table 7: 64a1 capped at 64 for the stem, then 64a1, 128a2, 256a3, 512a4.
    assert ARCHS['s0'].channels == (48, 48, 128, 256, 1024)
    assert ARCHS['s4'].channels == (64, 192, 448, 896, 2048)
    assert ARCHS['mu0'].channels == (48, 48, 64, 128, 384)
    assert stage_channels('s2', (3, 4)) == [640, 2048]


def test_unknown_arch_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown MobileOne arch 's9'.*s0, s1, s2, s3, s4, mu0"):
        MobileOne('s9')


def test_custom_arch_dict():
    arch = dict(num_blocks=(1, 1, 1, 1), widths=(0.5, 0.5, 0.5, 0.5), num_conv_branches=2)
    model = MobileOne(arch, out_indices=(4, ))
    assert model.channels == (32, 32, 64, 128, 256)
    assert model(torch.rand(1, 3, 64, 64))[0].shape == (1, 256, 2, 2)
    assert get_arch(arch) == MobileOneArch(**arch)


@pytest.mark.parametrize('arch, match', [
    (dict(num_blocks=(1, 1, 1), widths=(1, 1, 1, 1), num_conv_branches=1), 'num_blocks'),
    (dict(num_blocks=(1, 1, 1, 1), widths=(1, 1, 1, 1), num_conv_branches=0),
     'num_conv_branches'),
    (dict(num_blocks=(1, 1, 1, 1), widths=(1, 1, 1, 1), num_conv_branches=1,
          num_se_blocks=(0, 0, 2, 0)), 'num_se_blocks'),
    (dict(num_blocks=(1, 1, 1, 1), widths=(1, 1, 1, 1)), 'incomplete'),
    (dict(num_blocks=(1, 1, 1, 1), widths=(1, 1, 1, 1), num_conv_branches=1, depth=3),
     'unknown keys'),
])
def test_bad_arch_dict(arch, match):
    with pytest.raises(ValueError, match=match):
        MobileOne(arch)


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_indices=(1, 5)), r'out_indices \(1, 5\) must be taken from \(0, 1, 2, 3, 4\)'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(strides=(2, 2, 2, 2)), 'strides must list 5'),
    (dict(dilations=(1, 1, 1, 0, 1)), 'dilations'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MobileOne('s0', **kwargs)
