"""tools/export.py and its pipeline: a train-time checkpoint of the demo detector and segmentor
(helpers.DemoExports) becomes fused.pth + deploy_config.py + model.onnx; the pair loads strictly
and gives the train-time outputs, ONNX Runtime gives PyTorch's predictions, the OpenMMLab
inferencers run on the pair, and bad checkpoints are refused with one sentence."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import ROOT, assert_fused_close, calibrate_bn, save_checkpoint
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import mobileone_dense
from mobileone_dense.apis import build_model, load_config
from mobileone_dense.deploy import pipeline
from mobileone_dense.export.numerics import make_image, raw_outputs
from mobileone_dense.export.onnx import export_onnx
from mobileone_dense.runtimes.onnxruntime import ort_session
from mobileone_dense.utils.cli import run_tool
from mobileone_dense.utils.safe_load import mmengine_checkpoints

pytestmark = pytest.mark.slow  # the demo models are exported (conftest.demo_exports)


@pytest.fixture(scope='module', params=['det', 'seg'])
def exported(request, demo_exports):
    return demo_exports[request.param]


def _export(*argv) -> int:
    """Run tools/export.py's main as its command line does; returns the exit status."""
    spec = importlib.util.spec_from_file_location('export_tool', ROOT / 'tools/export.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return run_tool(module.main, [str(a) for a in argv])


def _deploy_model(out: Path) -> torch.nn.Module:
    """The deploy config's model with fused.pth loaded strictly, the way mmengine loads."""
    cfg = Config.fromfile(out / 'deploy_config.py')
    model = build_model(cfg)
    with mmengine_checkpoints():
        load_checkpoint(model, str(out / 'fused.pth'), map_location='cpu', strict=True)
    return model


def test_writes_the_deploy_files(exported):
    out = exported['out']
    assert sorted(p.name for p in out.iterdir()) == [
        'deploy_config.py', 'fused.pth', 'model.onnx', 'model.tflite',
        'model_int8.calibration.json', 'model_int8.tflite', 'train_config.py']
    cfg = Config.fromfile(out / 'deploy_config.py')
    assert cfg.model.backbone.deploy is True
    assert cfg.model.backbone.init_cfg is None
    fused = torch.load(out / 'fused.pth', map_location='cpu')  # plain safe loading
    keys = list(fused['state_dict'])
    assert any('.reparam_conv.' in k for k in keys)
    assert not any('.rbr_' in k for k in keys)
    assert list(fused['meta']['dataset_meta']['classes']) == exported['classes']
    assert fused['meta']['iter'] == exported['model'].checkpoint_meta['iter']  # meta kept
    onnx.checker.check_model(str(out / 'model.onnx'))


def test_fused_pair_gives_the_train_time_outputs(exported):
    model, out = exported['model'], exported['out']
    deployed = _deploy_model(out)
    assert deployed.backbone.deployed
    image = make_image(exported['size'], seed=1)  # not the tool's own check input
    inputs, _ = exported['task'].preprocess(model, image)
    expected, actual = raw_outputs(model, inputs), raw_outputs(deployed, inputs)
    assert len(actual) == len(expected) > 0
    for a, e in zip(actual, expected):
        assert_fused_close(a, e)


def _pair_detections(actual, expected):
    """Reorder ``actual`` detections to face their ``expected`` partners (same label, nearest
    box); near-equal scores may come out in either order."""
    a_boxes, e_boxes = torch.as_tensor(actual[0]), expected[0]
    a_labels, e_labels = torch.as_tensor(actual[2]), expected[2]
    order, free = [], torch.ones(len(a_boxes), dtype=torch.bool)
    for box, label in zip(e_boxes, e_labels):
        dist = (a_boxes - box).abs().amax(1).masked_fill(~free | (a_labels != label), 1e9)
        j = int(dist.argmin()) if len(dist) else 0
        order.append(j)
        if len(dist):
            free[j] = False
    idx = torch.tensor(order, dtype=torch.long)
    return [torch.as_tensor(x)[idx] if len(idx) else torch.as_tensor(x) for x in actual]


def test_onnx_runtime_agrees_with_pytorch(exported):
    import onnxruntime as ort
    out, task = exported['out'], exported['task']
    deployed = _deploy_model(out)
    image = make_image(exported['size'], seed=2)
    session = ort.InferenceSession(str(out / 'model.onnx'), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['image']
    assert [o.name for o in session.get_outputs()] == list(task.output_names)
    result = session.run(None, {'image': image.numpy()})
    expected = task.predictions(deployed, image)
    if exported['case'] == 'det':
        boxes, scores, labels = expected
        assert len(boxes) > 10, 'the test model should detect something'
        assert len(result[0]) == len(boxes)
        boxes_o, scores_o, labels_o = _pair_detections(result, expected)
        torch.testing.assert_close(labels_o, labels)
        torch.testing.assert_close(boxes_o, boxes, atol=1e-2, rtol=0)
        torch.testing.assert_close(scores_o, scores, atol=1e-4, rtol=0)
    else:
        logits, seg_map = expected
        assert_fused_close(torch.as_tensor(result[0]), logits)
        agree = (torch.as_tensor(result[1]) == seg_map).double().mean().item()
        assert agree >= 0.999
        assert len(seg_map.unique()) > 1, 'the test model should predict several classes'


def test_onnx_graph_holds_the_post_processing(exported):
    graph = onnx.load(str(exported['onnx'])).graph
    ops = {n.op_type for n in graph.node}
    if exported['case'] == 'det':
        assert {'NonMaxSuppression', 'TopK'} <= ops  # NMS is inside the graph
    else:
        assert {'ArgMax', 'Resize'} <= ops
    assert not any('rbr_' in init.name for init in graph.initializer)


def test_inferencers_run_on_the_pair(exported, tmp_path):
    import mmcv
    out = exported['out']
    image = make_image((90, 120), seed=3)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    path = str(tmp_path / 'image.jpg')
    mmcv.imwrite(image, path)
    with mmengine_checkpoints():
        if exported['case'] == 'det':
            from mmdet.apis import DetInferencer
            inferencer = DetInferencer(model=str(out / 'deploy_config.py'),
                                       weights=str(out / 'fused.pth'), device='cpu',
                                       show_progress=False)
        else:
            from mmseg.apis import MMSegInferencer
            inferencer = MMSegInferencer(model=str(out / 'deploy_config.py'),
                                         weights=str(out / 'fused.pth'), device='cpu')
    result = inferencer(path, out_dir=str(tmp_path / 'vis'))
    if exported['case'] == 'det':
        assert len(result['predictions'][0]['bboxes']) > 0
    else:
        assert result['predictions'].shape == (90, 120)
    assert (tmp_path / 'vis' / 'vis' / 'image.jpg').is_file()
    assert inferencer.model.backbone.deployed
    assert list(inferencer.model.dataset_meta['classes']) == exported['classes']


# ---------------------------------------------------------------------------- refusals
def _run_refused(config, ckpt: Path, out: Path, capsys) -> str:
    code = _export(config, ckpt, '--out-dir', out, '--input-size', 64, 64)
    err = capsys.readouterr().err
    assert code == 1
    assert not out.exists(), 'a refused export must not write anything'
    lines = [line for line in err.strip().splitlines() if line.startswith('error:')]
    assert len(lines) == 1, err
    return lines[0]


def test_mismatched_checkpoint_is_refused_with_one_sentence(tmp_path, capsys):
    config = ROOT / 'configs/ssdlite/mobileone_s0.py'
    cfg = load_config(config)
    cfg.model.backbone.arch = 's1'  # an S1 detector's checkpoint for the S0 config
    channels = tuple(mobileone_dense.stage_channels('s1', (3, 4)))
    cfg.model.neck.in_channels = channels
    cfg.model.neck.out_channels = channels + tuple(cfg.model.neck.out_channels[2:])
    cfg.model.bbox_head.in_channels = cfg.model.neck.out_channels
    ckpt = save_checkpoint(build_model(cfg), tmp_path / 's1.pth', ['a'])
    line = _run_refused(config, ckpt, tmp_path / 'out', capsys)
    assert 'does not fit SingleStageDetector' in line
    assert 'shape mismatches' in line and 'backbone.stage0.rbr_conv.0.conv.weight' in line


def test_already_fused_checkpoint_is_refused(exported, tmp_path, capsys):
    line = _run_refused(exported['config'], exported['out'] / 'fused.pth', tmp_path / 'out',
                        capsys)
    assert 'is already fused' in line and 'deploy=True' in line


def test_fusion_that_changes_outputs_writes_nothing(demo_exports, tmp_path, capsys,
                                                   monkeypatch):
    seg = demo_exports['seg']
    fuse = pipeline.reparameterize_model

    def broken_fuse(m):
        fused = fuse(m)
        with torch.no_grad():
            fused.backbone.stage2[3].reparam_conv.bias.add_(0.5)  # a fusion bug
        return fused
    monkeypatch.setattr(pipeline, 'reparameterize_model', broken_fuse)
    line = _run_refused(seg['config'], seg['checkpoint'], tmp_path / 'out', capsys)
    assert 'differs from the train-time model beyond float tolerance' in line
    assert 'nothing was written' in line


def test_s4_squeeze_excite_exports(tmp_path):
    train = calibrate_bn(mobileone_dense.MobileOne('s4', out_indices=(3, 4)), size=64)
    fused = mobileone_dense.reparameterize_model(train)
    image = torch.randn(1, 3, 64, 96)
    path = export_onnx(fused, image, tmp_path / 's4.onnx', ['stage3', 'stage4'])
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {'Sigmoid', 'AveragePool', 'Resize'} <= ops
    result = ort_session(path).run(None, {'image': image.numpy()})
    with torch.no_grad():
        expected = train(image)
    for a, e in zip(result, expected):
        assert_fused_close(torch.as_tensor(a), e)
    # The SE layers stay in ONNX Runtime's blocked layout: it reorders only the two outputs
    # (the stem reads the plain input directly).
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / 's4_ort.onnx')
    ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count('ReorderOutput') == 2 and 'ReorderInput' not in ops
