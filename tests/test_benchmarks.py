"""The benchmarks behind ``tools/benchmark.py``: the ratios against a worked example, the one
model builder (both sides deployed alike), the conversion cache, the picture, and each
subcommand once end to end on small inputs (no timing asserts: the machine is shared)."""
from __future__ import annotations

import importlib.util
import json
import statistics

import pytest
import torch
from helpers import ROOT, call_tool, error_line, run_tool
from PIL import Image
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mobileone_dense.benchmark import convert as convert_module
from mobileone_dense.benchmark import latency
from mobileone_dense.benchmark.common import paired_median
from mobileone_dense.benchmark.models import PEER, Model, build
from mobileone_dense.benchmark.plot import draw_latency
from mobileone_dense.export.numerics import compare, flatten
from mobileone_dense.models import MobileOneBlock

BENCHMARK = ROOT / 'tools/benchmark.py'


# ------------------------------------------------------------------------------ ratios
def test_ratios_are_medians_of_per_round_ratios():
    onnx, fused = [1.0, 10.0, 10.0], [2.0, 5.0, 100.0]
    # Rounds give 0.5, 2 and 0.1: the median is 0.5, where the ratio of the medians is 2.
    assert paired_median(lambda o, f: o / f, onnx, fused) == pytest.approx(0.5)


def _timing(rounds: list[float]) -> dict:
    return dict(rounds_ms=rounds, median_ms=statistics.median(rounds), min_ms=min(rounds))


def test_rows_pair_runtimes_and_models_round_by_round():
    """Three rounds of an SSDLite pair, by hand; each ratio of medians would differ."""
    s0 = Model('ssdlite', 'S0', nn.Identity(), nn.Conv2d(1, 1, 1), postprocess=len)
    peer = Model('ssdlite', PEER, nn.Identity(), nn.Conv2d(1, 2, 1), postprocess=len)
    rounds = {
        # train / deployed: 30/10, 20/10, 90/30 = 3, 2, 3 -> 3
        'S0 train': [30, 20, 90], 'S0 pytorch': [10, 10, 30],
        # LiteRT FP32 / INT8 = 10/5, 12/4, 30/10 = 2, 3, 3 -> 3 (medians: 12/5 = 2.4)
        'S0 litert': [10, 12, 30], 'S0 litert_int8': [5, 4, 10],
        # INT8 over the peer's INT8 = 5/4, 4/16, 10/5 = 1.25, 0.25, 2 -> 1.25 (medians: 1.0)
        f'{PEER} litert_int8': [4, 16, 5],
        # end to end, FP32 / INT8 = 40/20, 41/41, 60/20 = 2, 1, 3 -> 2 (medians: 2.05)
        'S0 litert e2e': [40, 41, 60], 'S0 litert_int8 e2e': [20, 41, 20],
        'S0 mediapipe e2e': [50, 70, 60],
    }
    result = {f'{m} {r}{part}': _timing(rounds.get(f'{m} {r}{part}', [1, 1, 1]))
              for m in ('S0', PEER) for r in latency.RUNTIMES for part in ('', ' e2e')
              if part or r not in latency.APP}  # MediaPipe: end to end only
    rows = {(r['model'], r['part']): r
            for r in latency.rows('ssdlite', [s0, peer], latency.RUNTIMES, result)}
    network = rows[('S0', 'network')]
    assert network['fused_speedup'] == pytest.approx(3.0)
    assert network['int8_speedup'] == pytest.approx(3.0)
    assert network['over_peer']['litert_int8'] == pytest.approx(1.25)
    assert network['ms']['litert'] == 12 and network['params_m'] == pytest.approx(2e-6)
    assert network['size'] == 320
    assert rows[('S0', 'end to end')]['int8_speedup'] == pytest.approx(2.0)
    assert rows[('S0', 'end to end')]['ms']['mediapipe'] == 60
    assert 'mediapipe' not in network['ms']
    assert 'over_peer' not in rows[(PEER, 'network')]
    text = latency.table(list(rows.values()), latency.RUNTIMES)
    assert '| ssdlite S0 ' in text and f'| ssdlite {PEER} ' in text
    assert '| MediaPipe FP32 ms |' in text and '| MediaPipe INT8 ms |' in text


# ------------------------------------------------------------------------------ the builder
def _batch_norms(module: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in module.modules())


@pytest.mark.parametrize('name', ['mu0', PEER])
def test_both_sides_are_deployed_alike(name):
    """MobileOne and the peer: the deployed network has no BN left (reparameterized and
    folded), the train-time one has its BNs, and both give the same outputs."""
    model = build('backbone', name)
    assert _batch_norms(model.train) > 0 and _batch_norms(model.network) == 0
    assert not any(m.rbr_conv for m in model.network.modules() if isinstance(m, MobileOneBlock))
    assert not any(m.training for m in model.network.modules())
    with torch.no_grad():
        agreement = compare(flatten(model.network(model.image)),
                            flatten(model.train(model.image)), 1e-4)
    assert agreement.ok, agreement
    assert model.key == f'backbone_{name.lower()}_224'


@pytest.mark.slow
def test_detector_is_deployed_with_its_post_processing():
    model = build('ssdlite', 's0')
    assert model.name == 'S0' and model.size == 320 and _batch_norms(model.network) == 0
    with torch.no_grad():
        boxes, scores = model.network(model.image)
    detections = model.postprocess([boxes, scores])
    assert boxes.shape[:2] == scores.shape[:2] and len(detections) == 3


def test_pytorch_runner_picks_a_layout_and_keeps_the_outputs():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    image = torch.rand(1, 3, 32, 32)
    run, layout = latency.pytorch_runner(net, image)
    assert layout in ('NCHW', 'channels-last')
    with torch.no_grad():
        torch.testing.assert_close(run()[0].contiguous(), net(image))


# ------------------------------------------------------------------------------ the cache
def test_conversions_are_cached_by_weights_code_and_calibration(tmp_path, monkeypatch, capsys):
    written = []

    def fake_writer(kind):
        def write(network, image, path, calibration=None):
            written.append((kind, calibration is not None))
            path.write_bytes(b'model')
        return write
    monkeypatch.setattr(convert_module.onnx, 'export_onnx', fake_writer('onnx'))
    monkeypatch.setattr(convert_module.litert, 'write_tflite', fake_writer('litert'))
    model = build('backbone', 'mu0')
    runtimes = ['pytorch', 'onnx', 'litert', 'litert_int8']
    paths = convert_module.convert(model, runtimes, tmp_path, calib=2)
    assert sorted(paths) == ['litert', 'litert_int8', 'onnx'] and len(written) == 3
    assert ('litert', True) in written and ('litert', False) in written
    convert_module.convert(model, runtimes, tmp_path, calib=2)
    assert len(written) == 3 and 'onnx cached' in capsys.readouterr().out
    convert_module.convert(model, runtimes, tmp_path, calib=3)  # another calibration
    assert len(written) == 6
    with torch.no_grad():
        next(model.network.parameters()).add_(1)  # other weights
    convert_module.convert(model, ['onnx'], tmp_path, calib=3)
    assert len(written) == 7


# ------------------------------------------------------------------------------ the picture
def test_latency_picture_is_drawn(tmp_path):
    rows = [dict(group=g, model=m, size=s, part='network',
                 ms={r: 1.0 + i for i, r in enumerate(latency.RUNTIMES)})
            for g, s in (('backbone', 224), ('ssdlite', 320)) for m in ('S0', 'S1', PEER)]
    path = draw_latency(rows, latency.RUNTIMES, latency.LABELS, tmp_path / 'latency.png', 2)
    with Image.open(path) as image:
        assert image.size[0] > 1.5 * image.size[1] > 500  # two panels side by side


# ------------------------------------------------------------------------------ the tool
def test_the_tool_has_exactly_the_listed_subcommands(capsys):
    spec = importlib.util.spec_from_file_location('tool_benchmark', BENCHMARK)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit_:
        tool.main(['--help'])
    assert exit_.value.code == 0
    assert '{latency,train,coreml}' in capsys.readouterr().out


def test_bad_numbers_are_one_sentence(tmp_path, capsys):
    line = error_line(*call_tool('benchmark', 'latency', '--rounds', '0', '--out',
                                 tmp_path / 'l.json', capsys=capsys))
    assert '--rounds' in line
    assert not (tmp_path / 'l.json').exists()


@pytest.mark.slow
def test_latency_runs_end_to_end(tmp_path):
    """In a fresh process: ONNX Runtime's shared thread pool must be set up before the
    process's first session, which other tests may have made in this one."""
    out, plot = tmp_path / 'latency.json', tmp_path / 'pictures' / 'latency.png'
    result = run_tool(BENCHMARK, 'latency', '--groups', 'backbone', '--variants', 'mu0',
                      '--no-peers', '--rounds', '2', '--calib', '2', '--work-dir',
                      tmp_path / 'files', '--plot', plot, '--out', out, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r['model']: r for r in report['rows']}
    assert set(rows) == {'MU0'}  # the ratios to a peer: test_rows_pair_runtimes_and_models...
    assert set(rows['MU0']['ms']) == set(latency.RUNTIMES) - set(latency.APP)  # SSDLite only
    assert 'backbone: no MediaPipe figures (SSDLite only)' in report['notes']
    assert rows['MU0']['fused_speedup'] > 0 and rows['MU0']['int8_speedup'] > 0
    group = report['groups']['backbone']
    assert all(len(t['rounds_ms']) == 2 for t in group['raw'].values())
    checks = group['agreement']['MU0']
    assert checks['train']['ok'] and checks['onnx']['ok'] and checks['litert']['ok']
    # random weights: INT8 follows them loosely (trained models: see test_deployed.py)
    assert 0 < checks['litert_int8']['correlation'] <= 1
    assert set(group['layouts']['MU0']) == {'train', 'pytorch'}
    assert (tmp_path / 'files' / 'backbone_mu0_224_int8.tflite').is_file()
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| MU0 ' in result.stdout


@pytest.mark.slow
def test_latency_times_mediapipe_end_to_end(tmp_path):
    """SSDLite in MediaPipe Tasks: the app file converted with its metadata, then timed end to
    end beside deployed PyTorch (image in, detections out), with the config's score threshold
    leaving NMS work to do."""
    out = tmp_path / 'latency.json'
    result = run_tool(BENCHMARK, 'latency', '--groups', 'ssdlite', '--variants', 's0',
                      '--no-peers', '--runtimes', 'pytorch', 'mediapipe', '--rounds', '2',
                      '--work-dir', tmp_path / 'files', '--plot', '', '--out', out, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r['part']: r for r in report['rows']}
    assert rows['end to end']['ms']['mediapipe'] > 0 and rows['end to end']['ms']['pytorch'] > 0
    assert 'mediapipe' not in rows['network']['ms']
    assert report['groups']['ssdlite']['mediapipe']['S0 MediaPipe FP32'] > 0  # detections
    assert (tmp_path / 'files' / 'ssdlite_s0_320_app.tflite').is_file()
    assert '| MediaPipe FP32 ms |' in result.stdout


@pytest.mark.slow
def test_coreml_check_converts_a_config(tmp_path, capsys):
    out = tmp_path / 'coreml.json'
    status, err = call_tool('benchmark', 'coreml', '--configs',
                            'configs/ssdlite/mobileone_mu0_demo.py', '--work-dir',
                            tmp_path / 'packages', '--out', out, capsys=capsys)
    assert status == 0, err[-3000:]
    report = json.loads(out.read_text())
    row, = report['rows']
    assert report['ok'] and row['convs'] == row['expected_convs'] and row['batch_norms'] == 0
    assert (tmp_path / 'packages' / 'mobileone_mu0_demo.mlpackage').is_dir()
