"""Exported models (.onnx, .tflite) used like checkpoints: DeployedModel against the PyTorch
model's own predict, tools/test.py scoring a .tflite with the config's evaluator exactly as it
scores the checkpoint, tools/image_demo.py drawing with one, and one sentence for files that
cannot run.

The models are the mu0 demo configs (SSDLite, DeepLabV3), randomly initialised with calibrated BN
(conftest.calibrate_bn), saved as train-time checkpoints and exported from them by the export
pipeline (:data:`FORMATS`). They run at 80x96 (H x W) on the 64x64 demo scenes: neither square
nor the scenes' size, so a mapping back to the original pixels that forgets or swaps an axis
changes the numbers.

Why the metrics comparison means something: a random model scores about zero against the real
boxes and masks, and two zeros agree whatever the mapping. So the test split's ground truth is
the PyTorch model's own predictions on the original images (mmdet's ``inference_detector`` /
mmseg's ``inference_model``, which rescale as mmdet/mmseg do): the checkpoint then scores about
1 (box mAP) or 100 (mIoU), and the exported model scores the same only if its predictions land
on the same original pixels. Measured once by breaking the mapping on purpose: boxes left
undivided by the pipeline's scale_factor score mAP 0.007 (axes swapped: 0.017) instead of 1.0;
logits resized nearest instead of bilinear score mIoU 89.6 instead of 100.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from conftest import calibrate_bn
from mmengine.fileio import load
from tools_helpers import ROOT, call_tool, error_line, make_demo_data, run_tool

import mobileone_dense  # noqa: F401  (registers MobileOne, applies the compat fixes)
from mobileone_dense.apis import build_model, load_config
from mobileone_dense.export import pipeline
from mobileone_dense.tasks import task_of
from mobileone_dense.tasks.deployed import DeployedModel, evaluate_deployed

TEST = ROOT / 'tools' / 'test.py'
SIZE = (80, 96)  # (H, W) of the exported models and of the test pipelines' Resize
#: Ground-truth boxes per image (on average) taken from the PyTorch model's best detections.
PSEUDO_BOXES = 3

CONFIGS = {
    'det': """
_base_ = '{base}'
data_root = '{data}/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({w}, {h}), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, ann_file='annotations/pseudo_val.json',
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/pseudo_val.json')
test_evaluator = val_evaluator
""",
    'seg': """
_base_ = '{base}'
data_root = '{data}'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({w}, {h}), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline,
                                   data_prefix=dict(img_path='images/val',
                                                    seg_map_path='pseudo_masks/val')))
test_dataloader = val_dataloader
""",
}
#: What each task exports. A segmentor's .onnx and .tflite both end at the network's outputs
#: and take one path through DeployedModel; a detector's .onnx holds its NMS, its .tflite not.
FORMATS = {'det': ['onnx', 'tflite'], 'seg': ['onnx', 'tflite']}
BASES = {'det': ROOT / 'configs/ssdlite/mobileone_mu0_demo.py',
         'seg': ROOT / 'configs/deeplabv3/mobileone_mu0_demo.py'}


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp('deployed') / 'demo', train=1, val=4)


def _val_images(data: Path) -> list[Path]:
    return sorted((data / 'images' / 'val').glob('*.jpg'))


def _pseudo_ground_truth(case: str, cfg, checkpoint: Path, data: Path) -> None:
    """Write the PyTorch model's own predictions on the val images as their ground truth."""
    if case == 'det':
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(cfg, str(checkpoint), device='cpu')
        coco = json.loads((data / 'annotations' / 'instances_val.json').read_text())
        ids = {im['file_name']: im['id'] for im in coco['images']}
        detections = []
        for path in _val_images(data):
            pred = inference_detector(model, str(path)).pred_instances
            detections += [(score, ids[path.name], box, label) for box, score, label in zip(
                pred.bboxes.tolist(), pred.scores.tolist(), pred.labels.tolist())]
        # The best-scoring ones over all images: every detection above the last of them is
        # right and every one below it wrong, so each class's precision is 1 up to recall 1.
        detections.sort(key=lambda d: -d[0])
        annotations = []
        for _, image_id, (x1, y1, x2, y2), label in detections[:PSEUDO_BOXES * len(ids)]:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=label + 1, bbox=[x1, y1, x2 - x1, y2 - y1],
                                    area=(x2 - x1) * (y2 - y1), iscrowd=0))
        assert len({a['category_id'] for a in annotations}) > 1, annotations
        coco['annotations'] = annotations
        (data / 'annotations' / 'pseudo_val.json').write_text(json.dumps(coco))
    else:
        from mmseg.apis import inference_model, init_model
        model = init_model(cfg, str(checkpoint), device='cpu')
        out = data / 'pseudo_masks' / 'val'
        out.mkdir(parents=True, exist_ok=True)
        shares = []
        for path in _val_images(data):
            seg = inference_model(model, str(path)).pred_sem_seg.data[0].numpy().astype(np.uint8)
            mmcv.imwrite(seg, str(out / f'{path.stem}.png'))
            shares.append(np.bincount(seg.ravel(), minlength=6) / seg.size)
        # A map of one class would score 100 whatever the mapping: ask for structure.
        second = np.sort(np.mean(shares, axis=0))[-2]
        assert second > 0.05, f'the test model should predict several classes ({shares})'


@pytest.fixture(scope='module', params=['det', 'seg'])
def exported(request, demo_data, tmp_path_factory):
    """A train-time checkpoint, its pseudo ground truth, and the export pipeline's files
    (fused.pth, deploy_config.py, :data:`FORMATS`) of one task."""
    case = request.param
    root = tmp_path_factory.mktemp(case)
    config = root / 'tiny.py'
    config.write_text(CONFIGS[case].format(base=BASES[case], data=demo_data, h=SIZE[0],
                                           w=SIZE[1]))
    cfg = load_config(config)
    task = task_of(cfg)
    torch.manual_seed(0)
    model = calibrate_bn(build_model(cfg), size=96)
    classes = list(cfg.test_dataloader.dataset.metainfo['classes'])
    meta = dict(dataset_meta=dict(classes=classes))
    if case == 'seg':
        meta['dataset_meta']['palette'] = list(cfg.test_dataloader.dataset.metainfo['palette'])
    checkpoint = root / 'train.pth'
    torch.save(dict(meta=meta, state_dict=model.state_dict()), checkpoint)
    _pseudo_ground_truth(case, load_config(config), checkpoint, demo_data)

    deploy = root / 'deploy'
    start = time.perf_counter()
    pipeline.export(config, checkpoint, deploy, formats=FORMATS[case], input_size=SIZE,
                    log=lambda _: None)
    print(f'{case}: {", ".join(FORMATS[case])} written in {time.perf_counter() - start:.1f} s')
    return dict(case=case, config=config, cfg=load_config(config), task=task, model=model,
                checkpoint=checkpoint, onnx=deploy / 'model.onnx',
                tflite=deploy / 'model.tflite', data=demo_data, root=root)


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
    assert deployed.input_size == SIZE
    cfg = exported['cfg']
    for path in _val_images(exported['data'])[:2]:
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
        p.name for p in _val_images(exported['data'])]
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


# ------------------------------------------------------------------ image_demo.py
def test_image_demo_draws_with_an_exported_model(exported, tmp_path, capsys):
    """The picture of the .tflite is that of the checkpoint (same boxes or mask, drawn by the
    same visualizer with the config's class names)."""
    image = _val_images(exported['data'])[0]
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
        line = error_line(*call_tool('image_demo', _val_images(exported['data'])[0], config,
                                     garbage, capsys=capsys))
        assert 'garbage.tflite is not a LiteRT model' in line
        line = error_line(*call_tool('test', config, exported['tflite'], '--launcher',
                                     'pytorch', capsys=capsys))
        assert '--launcher pytorch' in line and 'one process' in line
    else:  # the segmentor's .tflite with the detector's config
        line = error_line(*call_tool('test', BASES['det'], exported['tflite'], capsys=capsys))
        assert 'model.tflite outputs arrays of shapes [(1, 6, 80, 96), (1, 80, 96)]' in line
        assert 'pass the config the model was exported from' in line
