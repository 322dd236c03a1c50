"""Exported models (.onnx, .tflite) used like checkpoints: DeployedModel against the PyTorch
model's own predict, tools/test.py scoring a .tflite with the config's evaluator exactly as it
scores the checkpoint, the INT8 file's accuracy against the float file's, tools/image_demo.py
drawing with one, and one sentence for files that cannot run.

The models are the tiny detector and segmentor of helpers.TinyExports: the mu0 demo configs,
randomly initialised with calibrated BN, exported at 80x96 (H x W) and run on the 64x64 demo
scenes, with the PyTorch model's own predictions as the test split's ground truth (see
helpers.write_pseudo_ground_truth): the checkpoint scores about 1 (box mAP) or 100 (mIoU), and an
exported file the same only if its predictions land on the same original pixels. Breaking the
mapping on purpose once (boxes left undivided by the pipeline's scale_factor) scored box mAP
near 0 instead of 1.
"""
from __future__ import annotations

import json
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from helpers import EXPORT_BASES, EXPORT_SIZE, ROOT, call_tool, error_line, run_tool, val_images
from mmengine.fileio import load

from mobileone_dense.apis import load_config
from mobileone_dense.deploy.evaluate import DeployedModel, evaluate_deployed

pytestmark = pytest.mark.slow  # the tiny models are exported with litert-torch once

TEST = ROOT / 'tools' / 'test.py'
#: How far the INT8 file's metric may fall below the float file's on the pseudo ground truth
#: (box mAP in 0..1, mIoU in %): 8 bits move boxes and flip near-tied pixels, a broken scale
#: or calibration costs most of the metric.
INT8_MAX_DROP = {'det': 0.15, 'seg': 10.0}


@pytest.fixture(scope='module', params=['det', 'seg'])
def exported(request, tiny_exports):
    return tiny_exports[request.param]


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
    """DeployedModel.predict on a 64x64 scene (resized to 80x96 inside, mapped back) gives the
    detections / class map of the PyTorch model's own inference on the original image."""
    deployed = DeployedModel(exported['cfg'], exported[fmt], threads=1)
    assert deployed.input_size == EXPORT_SIZE
    cfg = exported['cfg']
    for path in val_images(exported['data'])[:2]:
        image = mmcv.imread(str(path))
        actual = deployed.predict(image)
        if exported['case'] == 'det':
            from mmdet.apis import inference_detector
            exported['model'].cfg = cfg
            pred = inference_detector(exported['model'], image).pred_instances
            expected = [pred.bboxes, pred.scores, pred.labels]
            assert len(expected[0]) > 10, 'the test model should detect many boxes'
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
    train.pth gives (see the module doc for why they are near 1 / 100), and its dumped
    predictions sit on the checkpoint's, in the original images' pixels."""
    pth, pth_preds, _ = _test_tool(exported, exported['checkpoint'], tmp_path / 'pth')
    lite, lite_preds, log = _test_tool(exported, exported['tflite'], tmp_path / 'tflite',
                                       '--show-dir', tmp_path / 'shown')
    assert sorted(p.name for p in (tmp_path / 'shown').iterdir()) == [
        p.name for p in val_images(exported['data'])]
    assert lite['runtime'] == 'LiteRT' and lite['model'] == str(exported['tflite'])
    assert lite['config'] == str(exported['config'])
    assert sorted(lite['metrics']) == sorted(pth['metrics'])
    assert [p['img_path'] for p in lite_preds] == [p['img_path'] for p in pth_preds]
    assert len(lite_preds) == 4
    if exported['case'] == 'det':
        assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log
        assert pth['metrics']['coco/bbox_mAP'] >= 0.9, pth['metrics']
        assert lite['metrics'] == pytest.approx(pth['metrics'], abs=1e-3)
        for a, e in zip(lite_preds, pth_preds):
            actual = [a['pred_instances'][k] for k in ('bboxes', 'scores', 'labels')]
            expected = [e['pred_instances'][k] for k in ('bboxes', 'scores', 'labels')]
            assert len(actual[0]) == len(expected[0]) > 10
            boxes, scores, labels = _paired(actual, expected)
            torch.testing.assert_close(labels, expected[2])
            torch.testing.assert_close(boxes, expected[0], atol=1e-2, rtol=0)
    else:
        assert 'mIoU' in log
        assert pth['metrics']['mIoU'] >= 99.9, pth['metrics']
        # mmseg reports percent: 0.1 point is 1e-3 of the fraction
        assert lite['metrics'] == pytest.approx(pth['metrics'], abs=0.1)
        for a, e in zip(lite_preds, pth_preds):
            actual, expected = a['pred_sem_seg']['data'], e['pred_sem_seg']['data']
            assert actual.shape == expected.shape == (1, 64, 64)
            assert (actual == expected).double().mean().item() >= 0.999


def test_evaluate_deployed_scores_the_onnx_model(exported):
    """The .onnx model (the detector with NMS inside) through evaluate_deployed, in this
    process: the checkpoint's box mAP / mIoU on its own pseudo ground truth."""
    metrics = evaluate_deployed(load_config(exported['config']), exported['onnx'], threads=1)
    if exported['case'] == 'det':
        assert metrics['coco/bbox_mAP'] >= 0.9, metrics
    else:
        assert metrics['mIoU'] >= 90, metrics


def test_int8_file_scores_within_a_stated_distance_of_the_float_file(exported):
    """The INT8 file's box mAP / mIoU, scored by the config's evaluator, is within
    :data:`INT8_MAX_DROP` of the float file's (which is the checkpoint's, see above)."""
    cfg = load_config(exported['config'])
    key = 'coco/bbox_mAP' if exported['case'] == 'det' else 'mIoU'
    fp32 = evaluate_deployed(cfg, exported['tflite'], threads=2)[key]
    int8 = evaluate_deployed(cfg, exported['int8'], threads=2)[key]
    assert fp32 >= (0.9 if exported['case'] == 'det' else 90), fp32
    assert int8 >= fp32 - INT8_MAX_DROP[exported['case']], (int8, fp32)


# ------------------------------------------------------------------ image_demo.py
def test_image_demo_draws_with_an_exported_model(exported, tmp_path, capsys):
    """The picture of the .tflite is that of the checkpoint (same boxes or mask, drawn by the
    same visualizer with the config's class names)."""
    image = val_images(exported['data'])[0]
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
        line = error_line(*call_tool('image_demo', val_images(exported['data'])[0], config,
                                     garbage, capsys=capsys))
        assert 'garbage.tflite is not a LiteRT model' in line
        line = error_line(*call_tool('test', config, exported['tflite'], '--launcher',
                                     'pytorch', capsys=capsys))
        assert '--launcher pytorch' in line and 'one process' in line
    else:  # the segmentor's .tflite with the detector's config
        line = error_line(*call_tool('test', EXPORT_BASES['det'], exported['tflite'],
                                     capsys=capsys))
        assert 'model.tflite outputs arrays of shapes [(1, 6, 80, 96), (1, 80, 96)]' in line
        assert 'pass the config the model was exported from' in line
