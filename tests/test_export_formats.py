"""tools/export.py --format tflite tflite-int8: the demo detector and segmentor
(helpers.DemoExports) become LiteRT models; the FP32 model gives PyTorch's outputs in LiteRT
(XNNPACK), the INT8 model runs and follows the float network closely, calibration reads the
config's training images through its test pipeline (or a folder), and bad requests (an unknown
format, a calibration folder without readable images, a network the converter rejects) get one
sentence and write nothing. Core ML has its own file (test_coreml.py)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, calibrate_bn, make_demo_data, save_checkpoint

from mobileone_dense.apis import build_model, load_config
from mobileone_dense.deploy.calibration import calibration_images
from mobileone_dense.errors import ExportError
from mobileone_dense.export import litert as litert_export
from mobileone_dense.export.numerics import correlation, make_image
from mobileone_dense.runtimes import open_model
from mobileone_dense.runtimes.litert import LiteRTModel
from mobileone_dense.utils.cli import run_tool

#: The INT8 network's outputs (boxes and class scores; logits) must correlate with float at
#: least this well on its calibration-like input; a broken scale or a wrong layout gives < 0.5.
INT8_MIN_CORRELATION = 0.95
DET_CONFIG = ROOT / 'configs/ssdlite/mobileone_mu0_demo.py'


def _calib_folder(path: Path, size, count: int = 4) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        image = make_image(size, seed=100 + seed)[0].permute(1, 2, 0).numpy().astype(np.uint8)
        cv2.imwrite(str(path / f'calib_{seed}.jpg'), image)
    return path


def _export(*argv) -> int:
    """Run tools/export.py's main as its command line does; returns the exit status."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('export_tool', ROOT / 'tools/export.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return run_tool(module.main, [str(a) for a in argv])


# seg first: under make test's two workers, the other module asks for det first, so the two
# models export at the same time
@pytest.fixture(scope='module', params=['seg', 'det'])
def exported(request, demo_exports):
    """The demo model's export and its fused deploy model."""
    case = dict(demo_exports[request.param])
    out = case['out']
    case['deployed'] = build_model(load_config(out / 'deploy_config.py'),
                                   checkpoint=out / 'fused.pth')
    return case


def _app_outputs(exported, rgb):
    """What the LiteRT files hold: the network's app form (RGB in, MediaPipe's outputs)."""
    network = exported['task'].network(exported['deployed'], exported['size'], app=True)
    with torch.no_grad():
        return [o for o in network(rgb)]


@pytest.mark.slow
def test_tflite_fp32_gives_pytorch_outputs(exported):
    model = open_model(exported['out'] / 'model.tflite', threads=2)
    assert isinstance(model, LiteRTModel) and model.input_size == exported['size']
    image = make_image(exported['size'], seed=7)  # not the image the export checked
    actual = model(image.flip(1).numpy())  # the file takes RGB, as MediaPipe gives it
    expected = _app_outputs(exported, image.flip(1))
    assert len(actual) == len(expected) == {'det': 2, 'seg': 1}[exported['case']]
    for a, e in zip(actual, expected):
        scale = e.abs().max().item()
        torch.testing.assert_close(torch.from_numpy(a), e, rtol=0, atol=1e-4 * scale)
    # through the task's post-processing, the final predictions are PyTorch's own on the BGR
    # image (the channel order is folded into the first convolution)
    task, deployed, size = exported['task'], exported['deployed'], exported['size']
    final = task.postprocessor(deployed, size)(task.from_app_outputs(actual, deployed, size))
    assert task.compare_predictions(final, task.predictions(deployed, image), 1e-4,
                                    exported['size']).ok


@pytest.mark.slow
def test_tflite_int8_runs_and_follows_float(exported):
    path = exported['out'] / 'model_int8.tflite'
    assert path.stat().st_size < 0.5 * (exported['out'] / 'model.tflite').stat().st_size
    image = make_image(exported['size'], seed=7).flip(1)
    actual = open_model(path, threads=2)(image.numpy())
    floats = list(zip(actual, _app_outputs(exported, image)))
    assert all(np.isfinite(a).all() for a, _ in floats)
    corr = correlation([a for a, _ in floats], [e for _, e in floats])
    assert corr >= INT8_MIN_CORRELATION
    # ... but it is quantized: not float32 to rounding
    assert max(float(np.abs(a - e.numpy()).max()) for a, e in floats) > 1e-4

    record = json.loads((exported['out'] / 'model_int8.calibration.json').read_text())
    assert record['source'].startswith('train_dataloader') and record['count'] == 4
    train = {p.name for p in (exported['data'] / 'images' / 'train').iterdir()}
    assert {Path(f).name for f in record['files']} == train  # not the images it is tested on
    assert record['input_size'] == list(exported['size'])


def _op_counts(path: Path) -> Counter:
    from ai_edge_litert.interpreter import Interpreter
    return Counter(op['op_name'] for op in Interpreter(model_path=str(path))._get_ops_details())


@pytest.mark.slow
def test_int8_adds_quantization_not_layout_ops(exported):
    """The INT8 graph is the FP32 graph plus (de)quantization: no transposes of its own. The
    detector's head outputs once went NHWC -> NCHW -> requantize -> NHWC in INT8 (20
    transposes in SSDLite-S0, none in FP32), costing INT8 time for nothing."""
    fp32 = _op_counts(exported['out'] / 'model.tflite')
    int8 = _op_counts(exported['out'] / 'model_int8.tflite')
    assert int8['CONV_2D'] == fp32['CONV_2D'] > 0
    assert int8['TRANSPOSE'] == fp32['TRANSPOSE'] <= 1
    assert int8['RESHAPE'] == fp32['RESHAPE']


def test_correlation_is_a_real_measure():
    x = torch.linspace(-3, 5, 100)
    assert correlation([x], [2 * x + 1]) == pytest.approx(1.0)
    assert correlation([x], [-x]) == pytest.approx(-1.0)
    assert abs(correlation([torch.sin(7 * x)], [x])) < 0.3
    assert correlation([torch.tensor([1.0, float('nan')])], [torch.tensor([1.0, 2.0])]) != \
        correlation([torch.tensor([1.0, float('nan')])], [torch.tensor([1.0, 2.0])])  # NaN


def test_calibration_draws_the_training_images_through_the_test_pipeline(tmp_path):
    data = make_demo_data(tmp_path / 'demo', train=6, val=2)
    cfg = load_config(ROOT / 'configs/ssdlite/mobileone_mu0_demo.py')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data)
    images, record = calibration_images(cfg, (160, 128), count=4)
    assert len(images) == record['count'] == 4
    assert all(i.shape == (1, 3, 160, 128) and i.dtype == torch.float32 for i in images)
    assert all(0 <= i.min() and i.max() <= 255 and i.std() > 1 for i in images)
    train = {p.name for p in (data / 'images' / 'train').iterdir()}
    assert {Path(f).name for f in record['files']} <= train  # not the images it is tested on
    assert record['source'].startswith('train_dataloader')
    # the test pipeline's resize (the config's size), then the export size: the first image
    # as mmcv would load and resize it
    resize, = [step for step in cfg.test_pipeline if step['type'] == 'Resize']
    first = cv2.imread(record['files'][0])
    first = cv2.resize(cv2.resize(first, tuple(resize['scale']), interpolation=cv2.INTER_LINEAR),
                       (128, 160), interpolation=cv2.INTER_LINEAR)
    diff = np.abs(images[0][0].permute(1, 2, 0).numpy() - first)
    assert diff.max() <= 2 and diff.mean() < 0.5  # rounding of the two resizes, nothing more


def test_calibration_without_the_data_names_the_way_out(tmp_path):
    cfg = load_config(ROOT / 'configs/ssdlite/mobileone_mu0_demo.py')
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(ExportError, match=r'--calib-data DIR') as error:
        calibration_images(cfg, (64, 64), count=2)
    assert 'nowhere' in str(error.value) and '\n' not in str(error.value)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A train-time checkpoint of the mu0 demo detector (nothing exported from it)."""
    cfg = load_config(DET_CONFIG)
    path = tmp_path_factory.mktemp('bad') / 'epoch_1.pth'
    return save_checkpoint(calibrate_bn(build_model(cfg), size=96), path,
                           cfg.test_dataloader.dataset.metainfo['classes'])


def _error(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith('error: ')]
    assert len(lines) == 1, lines
    return lines[0]


def test_unknown_format_is_one_sentence(checkpoint, tmp_path, capsys):
    out = tmp_path / 'out'
    assert _export(DET_CONFIG, checkpoint, '--out-dir', out, '--format', 'tflite',
                   'tflite-int4') == 1
    message = _error(capsys)
    assert 'tflite-int4' in message and 'tflite-int8' in message and 'coreml' in message
    assert not out.exists()


@pytest.mark.parametrize('content', ['empty', 'unreadable'])
def test_calibration_folder_without_readable_images(checkpoint, tmp_path, capsys, content):
    calib = tmp_path / 'calib'
    calib.mkdir()
    if content == 'unreadable':
        (calib / 'broken.jpg').write_bytes(b'not a jpeg at all')
    out = tmp_path / 'out'
    assert _export(DET_CONFIG, checkpoint, '--out-dir', out, '--format',
                   'tflite-int8', '--calib-data', calib, '--input-size', 96, 96) == 1
    message = _error(capsys)
    assert str(calib) in message
    if content == 'unreadable':
        assert 'broken.jpg' in message
    assert not out.exists()  # nothing written, not even fused.pth


@pytest.mark.slow
def test_a_network_the_converter_rejects(checkpoint, tmp_path, capsys, monkeypatch):
    import litert_torch

    def refuse(*args, **kwargs):
        print('converter chatter that must not reach the terminal')
        raise RuntimeError('aten.foo is not lowerable to TFLite\nsecond line')
    monkeypatch.setattr(litert_torch, 'convert', refuse)
    out = tmp_path / 'out'
    assert _export(DET_CONFIG, checkpoint, '--out-dir', out, '--format', 'tflite',
                   '--input-size', 96, 96) == 1
    message = _error(capsys)
    assert 'RuntimeError: aten.foo is not lowerable to TFLite' in message
    assert 'second line' not in message and 'model.tflite' in message
    assert not out.exists()
    with pytest.raises(ExportError):
        litert_export.write_tflite(torch.nn.Identity(), torch.zeros(1, 3, 8, 8),
                                   tmp_path / 'x.tflite')
