"""The benchmarks behind ``tools/benchmark.py``: MAC counts against hand-counted answers, the
per-round figures on inputs with known answers, the picture, and each subcommand once end to end
on tiny inputs (no timing asserts: the machine is shared)."""
from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch
from conftest import calibrate_bn
from tools_helpers import ROOT, call_tool, error_line, run_tool
from torch import nn

import mobileone_dense
from mobileone_dense.benchmark import export, segmentor
from mobileone_dense.benchmark.macs import count_image_macs, count_macs
from mobileone_dense.benchmark.plot import draw

BENCHMARK = ROOT / 'tools/benchmark.py'


# ------------------------------------------------------------------------------ MACs
def _tiny_net() -> nn.Module:
    """On a 1x3x10x10 input, by hand (MACs = output elements x inputs per output element):"""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 8 x 10 x 10 outputs x 27 = 21600
        nn.ReLU(),
        nn.Conv2d(8, 4, 1, bias=False),  # 4 x 10 x 10 x 8 = 3200
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False),  # 4 x 5 x 5 x 9 = 900
        nn.Flatten(),
        nn.Linear(100, 10, bias=False),  # 10 x 100 = 1000
    ).eval()


def test_macs_of_a_tiny_net_match_a_hand_count():
    assert count_macs(_tiny_net(), torch.rand(1, 3, 10, 10)) == 21600 + 3200 + 900 + 1000


def test_image_macs_of_a_tiny_net_match_a_hand_count():
    # Only convolutions count, and only taps inside the 10x10 input. Per axis:
    # - 3x3, padding 1: the first and last of 10 outputs lose a tap, 10 * 3 - 2 = 28 taps;
    #   28 * 28 positions x 8 outputs x 3 inputs = 18816;
    # - 1x1: every tap, 3200;
    # - 3x3 stride 2, padding 1 on 10 -> 5 outputs: only the first loses a tap, 14 per axis;
    #   14 * 14 x 4 channels x 1 input each = 784.
    assert count_image_macs(_tiny_net(), torch.rand(1, 3, 10, 10)) == 18816 + 3200 + 784


def test_s0_macs_are_the_papers():
    train = mobileone_dense.MobileOne('s0', out_indices=(4, )).eval()
    fused = mobileone_dense.reparameterize_model(train)
    image = torch.rand(1, 3, 224, 224)
    macs_fused, macs_train = count_macs(fused, image), count_macs(train, image)
    # The paper's Table 9: 275 M for S0 at 224 (convs only; ptflops adds the bias additions).
    assert 0.27e9 < macs_fused < 0.285e9
    assert macs_train > 3 * macs_fused  # k = 4 conv branches plus the 1x1 scale branches


@pytest.mark.parametrize('kwargs', [dict(kernel_size=3, padding=1),
                                    dict(kernel_size=3, padding=12, dilation=12),
                                    dict(kernel_size=3, stride=2, padding=1, groups=4),
                                    dict(kernel_size=1)])
def test_image_macs_leave_out_the_taps_on_padding(kwargs):
    """Against a convolution of ones: each output element then sums one per input channel of
    its group for every tap inside the image, so the sum of the output is the MAC count."""
    conv = nn.Conv2d(8, 12, bias=False, **kwargs)
    nn.init.ones_(conv.weight)
    image = torch.ones(1, 8, 20, 16)
    with torch.no_grad():
        out = conv(image)
    assert count_image_macs(conv, image) == round(out.sum().item())
    every_tap = out.numel() * conv.weight[0].numel()
    dilated = kwargs.get('dilation', 1) > 1
    assert (count_image_macs(conv, image) < 0.5 * every_tap) == dilated


# ------------------------------------------------------------------------------ per-round figures
def test_ratios_are_medians_of_per_round_ratios():
    onnx, fused = [1.0, 10.0, 10.0], [2.0, 5.0, 100.0]
    # Rounds give 0.5, 2 and 0.1: the median is 0.5, where the ratio of the medians is 2.
    assert export.paired_median(lambda o, f: o / f, onnx, fused) == pytest.approx(0.5)


def test_the_peak_of_a_round_is_its_faster_sgemm():
    # 1000^3 MACs: 5 ms is 200 GMAC/s, 20 ms is 50 GMAC/s.
    assert export.round_peaks(1000 ** 3, [10.0, 20.0], [5.0, 40.0]) == pytest.approx([200, 50])


def test_share_of_peak_pairs_each_round_with_its_peak():
    # 2e9 MACs: 10 ms is 200 GMAC/s (50% of 400), 40 ms 50 (100% of 50), 20 ms 100 (25% of 400).
    assert export.share_of_peak(2e9, [10, 40, 20], [400, 50, 400]) == pytest.approx(50)


# ------------------------------------------------------------------------------ picture
def test_latency_picture_is_drawn(tmp_path):
    rows = []
    for group, size in (('backbone', 224), ('ssdlite', 320)):
        for i, model in enumerate(('s0', 's1', 'MobileNetV2')):
            reparam = model != 'MobileNetV2'
            rows.append(dict(group=group, model=model, size=size, reparam=reparam,
                             params_train_m=2.0 + i + reparam, params_fused_m=2.0 + i,
                             train_ms=30.0 + i, fused_ms=20.0 + i, onnx_ms=10.0 + i))
    path = draw(rows, tmp_path / 'latency.png')
    from PIL import Image
    with Image.open(path) as image:
        assert image.size[0] > 2 * image.size[1] > 500  # two panels side by side


# ------------------------------------------------------------------------------ the tool
def _run(subcommand: str, *args, tmp_path, capsys) -> dict:
    """Run ``tools/benchmark.py SUBCOMMAND ARGS`` in this process; returns its JSON."""
    out = tmp_path / f'{subcommand}.json'
    status, err = call_tool('benchmark', subcommand, *args, '--out', out, capsys=capsys)
    assert status == 0, err[-3000:]
    return json.loads(out.read_text())


def test_the_tool_has_exactly_the_listed_subcommands(capsys):
    spec = importlib.util.spec_from_file_location('tool_benchmark', BENCHMARK)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit_:
        tool.main(['--help'])
    assert exit_.value.code == 0
    assert '{backbone,detector,segmentor,export,train,deploy,coreml}' in capsys.readouterr().out


def test_export_plots_under_work_dirs_by_default():
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args([])
    assert args.plot == 'work_dirs/benchmark/export.png'  # not the tracked docs/latency.png


def test_export_with_nothing_to_time_is_one_sentence(tmp_path, capsys):
    line = error_line(*call_tool('benchmark', 'export', '--variants', '--det-variants',
                                 '--seg-variants', '--out', tmp_path / 'e.json', capsys=capsys))
    assert 'Nothing to time' in line
    assert not (tmp_path / 'e.json').exists()


def test_backbone_runs_end_to_end(tmp_path, capsys):
    result = _run('backbone', '--variants', 'mu0', '--sizes', '64', '--rounds', '2',
                  '--warmup', '0', tmp_path=tmp_path, capsys=capsys)
    assert [r['variant'] for r in result['rows']] == ['mu0']
    assert set(result['raw']['64']) == {'MobileNetV2', 'mu0 unfused', 'mu0 fused'}
    assert all(len(r['rounds_ms']) == 2 for r in result['raw']['64'].values())
    assert '| mu0 ' in result['table'] and '| MobileNetV2 ' in result['table']


def test_detector_runs_end_to_end(tmp_path, capsys):
    result = _run('detector', '--variants', 's0', '--size', '64', '--rounds', '2', '--warmup',
                  '0', '--train-rounds', '1', '--train-batch', '2', tmp_path=tmp_path,
                  capsys=capsys)
    rows = {r['model']: r for r in result['rows']}
    assert list(rows) == ['SSDLite-MobileNetV2', 'SSDLite-MobileOne-S0']
    for row in rows.values():
        assert row['fused_max_deviation'] < 1e-3  # checked before timing
        assert row['train_images_per_s'] > 0
    assert rows['SSDLite-MobileOne-S0']['params_m'] < rows['SSDLite-MobileNetV2']['params_m']
    assert set(result['latency']) == {f'{m} {kind}' for m in ('MobileNetV2', 'MobileOne-S0')
                                      for kind in ('train-time', 'fused', 'fused network')}


def test_check_fused_refuses_a_fusion_that_changes_outputs():
    """The one fused-vs-train-time check every benchmark and the export run: rounding passes, a
    fusion bug (one fused kernel off by half) does not."""
    from mobileone_dense.errors import ExportError
    from mobileone_dense.export.fusion import fuse
    from mobileone_dense.export.numerics import check_fused
    model = calibrate_bn(mobileone_dense.MobileOne('mu0', out_indices=(4, )), size=64)
    image = torch.rand(1, 3, 64, 64)
    fused = fuse(model)
    agreement, noise = check_fused(model, fused, image)
    assert agreement.ok and noise < agreement.rtol
    with torch.no_grad():
        fused.stage2[1].reparam_conv.weight.mul_(1.5)
    with pytest.raises(ExportError, match='differs from the train-time model beyond float'):
        check_fused(model, fused, image)


def test_segmentor_runs_end_to_end(tmp_path, capsys):
    result = _run('segmentor', '--variants', 's0', '--size', '64', '--rounds', '2',
                  '--warmup', '0', tmp_path=tmp_path, capsys=capsys)
    assert '| MobileOne-S0' in result['table'] and f'| {segmentor.PEER}' in result['table']
    assert result['size'] == 64 and [r['variant'] for r in result['rows']] == ['s0']
    assert set(result['raw']) == {f'{m}{part}' for m in (segmentor.PEER, 's0 train-time',
                                                          's0 fused')
                                  for part in ('', ' backbone')}
    row = result['rows'][0]
    assert set(row['fused']) == {'segmentor_ms', 'backbone_ms', 'head_ms', 'backbone_share',
                                 'head_vs_backbone'}


def test_segmentor_peer_is_mmsegs_mobilenetv2_deeplabv3_without_download():
    model = segmentor.build_segmentors([])[segmentor.PEER]
    assert type(model.backbone).__name__ == 'MobileNetV2'
    assert type(model.decode_head).__name__ == 'ASPPHead'
    assert model.decode_head.in_channels == 320 and model.decode_head.num_classes == 21
    assert model.auxiliary_head.num_classes == 21


def test_export_runs_end_to_end_on_a_shared_ort_pool(tmp_path):
    """In a fresh process: ONNX Runtime's shared thread pool has to be set up before the
    process's first session, which pytest's other tests may have made in this one."""
    out, plot = tmp_path / 'export.json', tmp_path / 'pictures' / 'latency.png'
    result = run_tool(BENCHMARK, 'export', '--variants', 's0', '--det-variants',
                      '--seg-variants', '--backbone-size', '64', '--rounds', '2', '--warmup',
                      '1', '--settle', '1', '--peak-size', '128', '--work-dir',
                      tmp_path / 'onnx', '--plot', plot, '--out', out, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['ort_pool'] == 'shared' and report['settle'] == 1
    rows = {r['model']: r for r in report['rows']}
    assert set(rows) == {'s0', 'MobileNetV2'}
    s0 = rows['s0']
    assert s0['gmacs_fused'] < s0['gmacs_train']
    assert 0.9 * s0['gmacs_fused'] < s0['gmacs_image'] < s0['gmacs_fused']  # 3x3 padding
    times = report['raw']['backbone']
    assert set(times) == {'sgemm torch', 'sgemm onnx', 's0 train', 's0 fused', 's0 onnx',
                          'MobileNetV2 fused', 'MobileNetV2 onnx'}
    assert all(len(t['rounds_ms']) == 2 for t in times.values())
    assert (tmp_path / 'onnx' / 'backbone_s0.onnx').is_file()
    assert report['plot'] == str(plot) and plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| s0 ' in result.stdout and 'target' not in result.stdout


def test_tolerance_follows_the_models_own_rounding_up_to_a_fixed_cap():
    """float_tolerance allows 8x a model's own float32 error, between RTOL and RTOL_CAP: a model
    that rounds badly does not buy itself a tolerance that would let a fusion bug through."""
    from mobileone_dense.export.numerics import RTOL, RTOL_CAP, float_tolerance, raw_outputs

    class Noisy(nn.Module):
        """Its float32 rendering is off by ``error`` relative to its float64 one."""

        def __init__(self, error):
            super().__init__()
            self.error = error

        def forward(self, x):
            return x * (1 + self.error) if x.dtype == torch.float32 else x

    x = torch.rand(1, 3, 8, 8) + 1
    for error, expected in ((0.0, RTOL), (2e-4, 1.6e-3), (1e-1, RTOL_CAP)):
        model = Noisy(error)
        tol, noise = float_tolerance(model, x, raw_outputs(model, x))
        assert noise == pytest.approx(error, rel=0.01, abs=1e-7)  # float32 steps of 1e-7
        assert tol == pytest.approx(expected, rel=0.01)
    assert RTOL < 1.6e-3 < RTOL_CAP < 1e-2  # a fusion bug is off by 1e-2 or more
