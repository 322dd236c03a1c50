"""``tools/benchmark.py deploy``: the ratios against a worked example, the conversion cache, the
backbone wrapper, the demo checkpoints' sentence, and one small detector end to end in every
runtime (no timing asserts: the machine is shared)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from tools_helpers import DEMO_CONFIG, ROOT, call_tool, error_line, run_tool
from torch import nn

from mobileone_dense.benchmark import deploy_convert, deploy_models, deploy_report
from mobileone_dense.benchmark.deploy_accuracy import demo_checkpoint, demo_input_size
from mobileone_dense.errors import UsageError

BENCHMARK = ROOT / 'tools/benchmark.py'


# ------------------------------------------------------------------------------ ratios
def _timing(rounds: list[float]) -> dict:
    return dict(rounds_ms=rounds, median_ms=statistics.median(rounds), min_ms=min(rounds))


def test_ratios_are_medians_of_per_round_ratios_worked_example():
    """Three rounds of an SSDLite pair, by hand. Every ratio pairs the two runtimes (or models)
    within a round, then takes the median; the ratio of the medians would differ each time."""
    post = lambda outputs: outputs  # noqa: E731  (a detector: end-to-end rows too)
    s0 = deploy_models.Model('ssdlite', 'MobileOne-S0', 32, nn.Identity(), 3_000_000, post)
    peer = deploy_models.Model('ssdlite', deploy_models.PEER, 32, nn.Identity(), 4_000_000, post,
                               peer=True)
    rounds = {
        # S0 network: LiteRT FP32 / INT8 = 10/5, 12/4, 30/10 = 2, 3, 3 -> 3 (medians: 12/5 = 2.4)
        'MobileOne-S0 litert': [10, 12, 30], 'MobileOne-S0 litert_int8': [5, 4, 10],
        # LiteRT FP32 / ORT = 10/20, 12/6, 30/15 = 0.5, 2, 2 -> 2 (medians: 12/15 = 0.8)
        'MobileOne-S0 onnx': [20, 6, 15],
        # INT8 over the peer's INT8 = 5/4, 4/16, 10/5 = 1.25, 0.25, 2 -> 1.25 (medians: 1.0)
        f'{deploy_models.PEER} litert_int8': [4, 16, 5],
        # end to end: FP32 / INT8 = 40/20, 41/41, 60/20 = 2, 1, 3 -> 2 (medians: 41/20 = 2.05)
        'MobileOne-S0 litert e2e': [40, 41, 60], 'MobileOne-S0 litert_int8 e2e': [20, 41, 20],
        # INT8 e2e over the peer's = 20/40, 41/20.5, 20/80 = 0.5, 2, 0.25 -> 0.5
        f'{deploy_models.PEER} litert_int8 e2e': [40, 20.5, 80],
    }
    result = {f'{m.name} {r}{part}': _timing(rounds.get(f'{m.name} {r}{part}', [1, 1, 1]))
              for m in (s0, peer) for r in deploy_models.RUNTIMES for part in ('', ' e2e')}
    rows = {(r['model'], r['part']): r
            for r in deploy_report.model_rows('ssdlite', [s0, peer], result, 'median')}
    assert set(rows) == {(m, p) for m in ('MobileOne-S0', deploy_models.PEER)
                         for p in ('network', 'end to end')}
    net, e2e = rows['MobileOne-S0', 'network'], rows['MobileOne-S0', 'end to end']
    assert net['ms']['litert'] == 12 and net['ms']['litert_int8'] == 5
    assert net['int8_speedup'] == pytest.approx(3)
    assert net['litert_over_onnx'] == pytest.approx(2)
    assert net['over_peer']['litert_int8'] == pytest.approx(1.25)
    assert net['over_peer']['pytorch'] == pytest.approx(1)
    assert e2e['int8_speedup'] == pytest.approx(2)
    assert e2e['over_peer']['litert_int8'] == pytest.approx(0.5)
    assert 'over_peer' not in rows[deploy_models.PEER, 'network']
    line, = deploy_report.headlines(list(rows.values()))
    assert 'network 1.25x, end to end 0.50x' in line
    table = deploy_report.table(list(rows.values()), 'median')
    assert '| ssdlite MobileOne-S0 ' in table and 'target' not in table


def test_settling_calls_last_the_given_time():
    import time

    from mobileone_dense.utils.timing import settle_by_time
    fns = {'5 ms': lambda: time.sleep(0.005), 'instant': lambda: None}
    counts = settle_by_time(fns, 50, minimum=3, cap=40)
    assert 7 <= counts['5 ms'] <= 10  # 50 ms in calls of at least 5 ms
    assert counts['instant'] == 40  # capped
    assert settle_by_time(fns, 1, minimum=3)['5 ms'] == 3


# ------------------------------------------------------------------------------ the cache
def test_converted_files_are_reused_until_their_model_changes(tmp_path):
    written = []

    def writer(runtime):
        def write(path):
            written.append(runtime)
            path.write_text(runtime)
        return write
    writers = {r: writer(r) for r in ('onnx', 'litert', 'litert_int8')}
    stamps = dict(onnx='a', litert='a', litert_int8='a calib 8')
    paths, info = deploy_convert.cached_files('m', stamps, writers, tmp_path)
    assert written == ['onnx', 'litert', 'litert_int8'] and not info['onnx']['reused']
    assert paths['litert_int8'] == tmp_path / 'm_int8.tflite'
    written.clear()
    _, info = deploy_convert.cached_files('m', stamps, writers, tmp_path)
    assert written == [] and all(i['reused'] for i in info.values())
    # another calibration: only INT8 again; a lost file: that one again
    deploy_convert.cached_files('m', dict(stamps, litert_int8='a calib 4'), writers, tmp_path)
    assert written == ['litert_int8']
    (tmp_path / 'm.onnx').unlink()
    deploy_convert.cached_files('m', dict(stamps, litert_int8='a calib 4'), writers, tmp_path)
    assert written == ['litert_int8', 'onnx']
    written.clear()
    deploy_convert.cached_files('m', stamps, writers, tmp_path, reconvert=True)
    assert written == ['onnx', 'litert', 'litert_int8']


def test_fingerprint_follows_the_weights_and_the_size():
    net = nn.Conv2d(3, 4, 3)
    before = deploy_convert.fingerprint(net, 64)
    assert deploy_convert.fingerprint(net, 64) == before != deploy_convert.fingerprint(net, 96)
    with torch.no_grad():
        net.weight[0, 0, 0, 0] += 1
    assert deploy_convert.fingerprint(net, 64) != before


def test_fingerprint_follows_the_code_that_writes_the_files(monkeypatch):
    net = nn.Conv2d(3, 4, 3)
    before = deploy_convert.fingerprint(net, 64)
    source = deploy_convert.writers_source()
    assert 'def fold_normalization' in source and 'def write_tflite' in source
    assert 'class DetectorPostprocess' not in source  # runs after the files, in PyTorch
    monkeypatch.setattr(deploy_convert, 'writers_source', lambda: source + '# changed')
    assert deploy_convert.fingerprint(net, 64) != before


def test_demo_exports_are_redone_when_the_code_that_writes_them_changes(tmp_path, monkeypatch):
    """The accuracy table's exports are cached per checkpoint; a change of the writers (as
    the latency files' fingerprint follows it) exports again, so the table never scores files
    an older export wrote."""
    from mobileone_dense.benchmark import deploy_accuracy
    from mobileone_dense.export import pipeline
    checkpoint = tmp_path / 'iter_5.pth'
    checkpoint.write_bytes(b'x')
    out_dir = tmp_path / 'exports'
    calls = []

    def fake_export(config, ckpt, out, formats, input_size, log):
        calls.append(formats)
        for name, _ in deploy_accuracy.FORMATS.values():
            (Path(out) / name).write_bytes(b'file')
        return dict(formats=formats)
    out_dir.mkdir()
    monkeypatch.setattr(pipeline, 'export', fake_export)
    config = DEMO_CONFIG
    deploy_accuracy.export_demo(config, checkpoint, out_dir, reconvert=False)
    deploy_accuracy.export_demo(config, checkpoint, out_dir, reconvert=False)
    assert len(calls) == 1  # cached
    source = deploy_convert.writers_source()
    monkeypatch.setattr(deploy_convert, 'writers_source', lambda: source + '# changed')
    deploy_accuracy.export_demo(config, checkpoint, out_dir, reconvert=False)
    assert len(calls) == 2


# ------------------------------------------------------------------------------ the models
def test_backbone_network_normalizes_the_bgr_image_as_the_configs_do():
    backbone = nn.Conv2d(3, 2, 1)
    image = torch.rand(1, 3, 8, 8) * 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in deploy_models.IMAGENET)
    with torch.no_grad():
        out, = deploy_models.BackboneNetwork(backbone)(image)
        expected = backbone((image.flip(1) - mean) / std)
    torch.testing.assert_close(out, expected)


def test_missing_demo_checkpoint_is_one_sentence(tmp_path):
    with pytest.raises(UsageError, match=r'^No demo-trained .*: run make demo first\.$'):
        demo_checkpoint(tmp_path)
    # a checkout moved elsewhere: last_checkpoint names the old absolute path
    (tmp_path / 'iter_5.pth').write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/work_dirs/demo_detection/iter_5.pth')
    assert demo_checkpoint(tmp_path) == tmp_path / 'iter_5.pth'


def test_demo_models_are_exported_at_the_size_their_checkpoints_are_tested_at():
    """The segmentation demo trains on 128x128 crops (its default export size) and tests on the
    256x256 scenes; the detection demo resizes to 256x256 for both."""
    from mobileone_dense.apis import load_config
    for config in ('configs/ssdlite/mobileone_mu0_demo.py',
                   'configs/deeplabv3/mobileone_mu0_demo.py'):
        assert demo_input_size(load_config(ROOT / config)) == [256, 256]


def test_nothing_to_time_is_one_sentence(tmp_path, capsys):
    line = error_line(*call_tool('benchmark', 'deploy', '--variants', '--det-variants',
                                 '--seg-variants', '--out', tmp_path / 'd.json', capsys=capsys))
    assert 'Nothing to time' in line and not (tmp_path / 'd.json').exists()


def test_no_timed_call_is_one_sentence(tmp_path, capsys):
    line = error_line(*call_tool('benchmark', 'deploy', '--variants', 's0', '--det-variants',
                                 '--seg-variants', '--calls', '0', '--out', tmp_path / 'd.json',
                                 capsys=capsys))
    assert '--calls 0' in line and 'at least one' in line and not (tmp_path / 'd.json').exists()


# ------------------------------------------------------------------------------ end to end
def test_deploy_runs_a_small_detector_in_every_runtime(tmp_path):
    """The demo SSDLite at 64x64, no peer, 2 rounds, in a fresh process (ONNX Runtime's shared
    pool must come before the process's first session): every runtime's figures, network and
    end to end, ratios that are the medians of the per-round ratios of the raw times."""
    out, plot, cache = tmp_path / 'deploy.json', tmp_path / 'deploy.png', tmp_path / 'cache'
    result = run_tool(BENCHMARK, 'deploy', '--variants', '--det-variants', '--seg-variants',
                      '--det-configs', DEMO_CONFIG, '--no-peers', '--det-size', '64',
                      '--rounds', '2', '--warmup', '0', '--settle', '0', '--calls', '2',
                      '--calib', '2',
                      '--work-dir', cache, '--plot', plot, '--out', out, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['calls'] == 2 and report['settle'] == 0
    name = DEMO_CONFIG.stem
    raw = report['raw']['ssdlite']
    assert set(raw) == {f'{name} {r}{part}' for r in ('pytorch', 'onnx', 'litert', 'litert_int8')
                        for part in ('', ' e2e')}
    assert all(len(t['rounds_ms']) == 2 and min(t['rounds_ms']) > 0 for t in raw.values())
    rows = {r['part']: r for r in report['rows']}
    assert set(rows) == {'network', 'end to end'}
    for part, suffix in (('network', ''), ('end to end', ' e2e')):
        row, times = rows[part], lambda r: raw[f'{name} {r}{suffix}']['rounds_ms']  # noqa
        assert set(row['ms']) == {'pytorch', 'onnx', 'litert', 'litert_int8'}
        assert row['ms']['litert'] == statistics.median(times('litert'))
        speedups = [f / q for f, q in zip(times('litert'), times('litert_int8'))]
        assert row['int8_speedup'] == pytest.approx((speedups[0] + speedups[1]) / 2)
        over = [t / o for t, o in zip(times('litert'), times('onnx'))]
        assert row['litert_over_onnx'] == pytest.approx((over[0] + over[1]) / 2)
    checks = report['agreement'][f'ssdlite {name}']
    assert checks['onnx']['ok'] and checks['litert']['ok']
    assert checks['litert_int8']['correlation'] > 0.9
    assert {p.name for p in cache.iterdir()} == {f'ssdlite_{name}_64{s}' for s in (
        '.json', '.onnx', '.tflite', '_int8.tflite')}
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and report['plot'] == str(plot)
    assert f'| ssdlite {name} ' in result.stdout and 'target' not in result.stdout
