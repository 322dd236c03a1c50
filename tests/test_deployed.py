"""Exported models (.onnx, .tflite) used like checkpoints: DeployedModel against the PyTorch
model's own predict, tools/test.py scoring a .tflite with the config's evaluator exactly as it
scores the checkpoint, the INT8 file's accuracy against the float files', tools/image_demo.py
drawing with one, and one sentence for files that cannot run.

The models are the ones ``make demo`` trained (helpers.DemoExports), exported at 224x256 (H x W)
and run on 256x256 demo test scenes with their ground truth: neither square nor the scenes'
size, so a mapping back to the original pixels that forgets or swaps an axis changes the
numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from helpers import (
    EXPORT_BASES,
    EXPORT_SIZE,
    ROOT,
    call_tool,
    error_line,
    held_out_images,
    run_tool,
)
from mmengine.fileio import load

from mobileone_dense.apis import load_config
from mobileone_dense.deploy.evaluate import DeployedModel, evaluate_deployed

pytestmark = pytest.mark.slow  # the demo models are exported (conftest.demo_exports)

TEST = ROOT / 'tools' / 'test.py'
#: How far the INT8 file's metric may fall below the float files' on the demo test scenes (box
#: mAP in 0..1, mIoU in %): 8 bits move boxes and flip near-tied pixels; a broken scale or
#: calibration costs most of the metric.
INT8_MAX_DROP = {'det': 0.03, 'seg': 1.5}


@pytest.fixture(scope='module', params=['det', 'seg'])
def exported(request, demo_exports):
    return demo_exports[request.param]


# ------------------------------------------------------------------ (a) predict vs PyTorch
def _paired(actual, expected):
    """``actual`` detections reordered to face their ``expected`` partners (same label,
    nearest box): near-equal scores may come out in either order."""
    boxes, labels = actual[0], actual[2]
    free = torch.ones(len(boxes), dtype=torch.bool)
    order = []
    for box, label in zip(expected[0], expected[2]):
        dist = (boxes - box).abs().amax(1).masked_fill(~free | (labels != label), float('inf'))
        j = int(dist.argmin())
        free[j] = False
        order.append(j)
    return [torch.as_tensor(x)[order] for x in actual]


@pytest.mark.parametrize('fmt', ['onnx', 'tflite'])
def test_predict_agrees_with_pytorch(exported, fmt):
    """DeployedModel.predict on a 256x256 scene (resized to 224x256 inside, mapped back) gives
    the detections / class map of the PyTorch model's own inference on the original image."""
    deployed = DeployedModel(exported['cfg'], exported[fmt], threads=1)
    assert deployed.input_size == EXPORT_SIZE
    cfg = exported['cfg']
    for path in held_out_images(exported['data'])[:2]:
        image = mmcv.imread(str(path))
        actual = deployed.predict(image)
        if exported['case'] == 'det':
            from mmdet.apis import inference_detector
            exported['model'].cfg = cfg
            pred = inference_detector(exported['model'], image).pred_instances
            expected = [pred.bboxes, pred.scores, pred.labels]
            assert len(expected[0]) > 0, 'the demo model should detect the scene\'s shapes'
            assert len(actual[0]) == len(expected[0])
            boxes, scores, labels = _paired(actual, expected)
            torch.testing.assert_close(labels, expected[2])
            torch.testing.assert_close(boxes, expected[0], atol=1e-2, rtol=0)
            torch.testing.assert_close(scores, expected[1], atol=1e-4, rtol=0)
        else:
            from mmseg.apis import inference_model
            exported['model'].cfg = cfg
            expected = inference_model(exported['model'], image).pred_sem_seg.data[0]
            assert actual[1].shape == (1, *image.shape[:2])
            agree = (actual[1][0] == expected).double().mean().item()
            assert agree >= 0.999, agree


# ------------------------------------------------------------------ (b) tools/test.py
def _test_tool(exported, model: Path, work: Path, *args) -> tuple[dict, list, str]:
    """tools/test.py CONFIG MODEL with --out: its test_metrics.json, the dumped predictions and
    what it printed."""
    result = run_tool(TEST, exported['config'], model, '--work-dir', work, '--out',
                      work / 'preds.pkl', *args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return (json.loads((work / 'test_metrics.json').read_text()), load(work / 'preds.pkl'),
            result.stdout + result.stderr)


def test_test_tool_scores_the_tflite_as_the_checkpoint(exported, tmp_path):
    """tools/test.py CONFIG model.tflite prints and writes the metrics that tools/test.py CONFIG
    checkpoint gives, and its dumped predictions sit on the checkpoint's, in the original
    images' pixels; so does the fused pair (deploy_config.py, fused.pth) as any checkpoint."""
    pth, pth_preds, _ = _test_tool(exported, exported['checkpoint'], tmp_path / 'pth')
    result = run_tool(TEST, exported['out'] / 'deploy_config.py', exported['out'] / 'fused.pth',
                      '--work-dir', tmp_path / 'fused', timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fused = json.loads((tmp_path / 'fused' / 'test_metrics.json').read_text())
    assert fused['metrics'] == pytest.approx(pth['metrics'], abs=1e-3)
    lite, lite_preds, log = _test_tool(exported, exported['tflite'], tmp_path / 'tflite',
                                       '--show-dir', tmp_path / 'shown')
    assert sorted(p.name for p in (tmp_path / 'shown').iterdir()) == [
        p.name for p in held_out_images(exported['data'])]
    assert lite['runtime'] == 'LiteRT' and lite['model'] == str(exported['tflite'])
    assert lite['config'] == str(exported['config'])
    assert sorted(lite['metrics']) == sorted(pth['metrics'])
    assert [p['img_path'] for p in lite_preds] == [p['img_path'] for p in pth_preds]
    assert len(lite_preds) == len(held_out_images(exported['data']))
    if exported['case'] == 'det':
        assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log
        assert pth['metrics']['coco/bbox_mAP'] > 0.3, pth['metrics']  # a trained model
        assert lite['metrics'] == pytest.approx(pth['metrics'], abs=1e-3)
        for a, e in zip(lite_preds, pth_preds):
            actual = [a['pred_instances'][k] for k in ('bboxes', 'scores', 'labels')]
            expected = [e['pred_instances'][k] for k in ('bboxes', 'scores', 'labels')]
            assert len(actual[0]) == len(expected[0]) > 0
            boxes, scores, labels = _paired(actual, expected)
            torch.testing.assert_close(labels, expected[2])
            torch.testing.assert_close(boxes, expected[0], atol=1e-2, rtol=0)
    else:
        assert 'mIoU' in log
        assert pth['metrics']['mIoU'] > 50, pth['metrics']  # a trained model
        # mmseg reports percent: 0.1 point is 1e-3 of the fraction
        assert lite['metrics'] == pytest.approx(pth['metrics'], abs=0.1)
        for a, e in zip(lite_preds, pth_preds):
            actual, expected = a['pred_sem_seg']['data'], e['pred_sem_seg']['data']
            assert actual.shape == expected.shape == (1, 256, 256)
            assert (actual == expected).double().mean().item() >= 0.999


def test_every_format_scores_as_the_float_files_and_int8_within_a_stated_distance(exported):
    """evaluate_deployed, in this process, on the .onnx model (the detector with NMS inside),
    the .tflite and the INT8 .tflite: the two float files score alike, and the INT8 file within
    :data:`INT8_MAX_DROP` of them."""
    cfg = load_config(exported['config'])
    key = 'coco/bbox_mAP' if exported['case'] == 'det' else 'mIoU'
    onnx, fp32, int8 = (evaluate_deployed(cfg, exported[fmt], threads=2)[key]
                        for fmt in ('onnx', 'tflite', 'int8'))
    assert onnx == pytest.approx(fp32, abs=1e-3 if exported['case'] == 'det' else 0.1)
    assert int8 >= fp32 - INT8_MAX_DROP[exported['case']], (int8, fp32)


# ------------------------------------------------------------------ image_demo.py
def test_image_demo_draws_with_an_exported_model(exported, tmp_path, capsys):
    """The picture of the .tflite is that of the checkpoint (same boxes or mask, drawn by the
    same visualizer with the config's class names)."""
    image = held_out_images(exported['data'])[0]
    drawn = {}
    for name in ('checkpoint', 'tflite'):
        status, err = call_tool('image_demo', image, exported['config'], exported[name],
                                '--out-dir', tmp_path / name, '--score-thr', 0.2,
                                capsys=capsys)
        assert status == 0, err[-3000:]
        drawn[name] = mmcv.imread(str(tmp_path / name / f'{image.stem}.png'))
    assert drawn['tflite'].shape == drawn['checkpoint'].shape
    differ = (drawn['tflite'] != drawn['checkpoint']).any(axis=-1).mean()
    assert differ < 0.01, f'{differ:.1%} of the pixels differ'


# ------------------------------------------------------------------ (c) bad inputs
def test_files_that_cannot_run_are_one_sentence(exported, tmp_path, capsys):
    """Missing, Core ML, garbage and other-task models, and --launcher, in one sentence each
    (the cheap ones with the detector's config, a file of the other task with both)."""
    config = exported['config']
    if exported['case'] == 'det':
        line = error_line(*call_tool('test', config, tmp_path / 'missing.onnx', capsys=capsys))
        assert 'missing.onnx does not exist' in line
        (tmp_path / 'model.mlpackage').mkdir()
        line = error_line(*call_tool('test', config, tmp_path / 'model.mlpackage',
                                     capsys=capsys))
        assert 'model.mlpackage is a Core ML package' in line and 'macOS' in line
        garbage = tmp_path / 'garbage.tflite'
        garbage.write_bytes(np.random.default_rng(0).bytes(4096))
        line = error_line(*call_tool('test', config, garbage, capsys=capsys))
        assert 'garbage.tflite is not a LiteRT model' in line
        line = error_line(*call_tool('image_demo', held_out_images(exported['data'])[0], config,
                                     garbage, capsys=capsys))
        assert 'garbage.tflite is not a LiteRT model' in line
        line = error_line(*call_tool('test', config, exported['tflite'], '--launcher',
                                     'pytorch', capsys=capsys))
        assert '--launcher pytorch' in line and 'one process' in line
    else:  # the segmentor's .tflite with the detector's config
        line = error_line(*call_tool('test', EXPORT_BASES['det'], exported['tflite'],
                                     capsys=capsys))
        assert 'model.tflite outputs arrays of shapes [(1, 224, 256, 6)]' in line
        assert 'detection model at 224x256 gives [(1, 1208, 4), (1, 1208, 5)]' in line
        assert 'pass the config the model was exported from' in line
