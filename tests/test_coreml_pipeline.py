"""The detector's Core ML model for Vision (mobileone_dense.export.coreml_pipeline, the pipeline
check in coreml_check, and deploy's coreml format): the box conversion appended to the network
gives Vision's normalised centre/size boxes; the NMS takes the config's test_cfg and the class
names; the written package is a pipeline [ML program, NMS] whose spec fields (inputs, flexible
outputs, thresholds, labels, class-wise NMS, the program's weights) are what Vision and Core
ML's validator need; and the check fails on packages that differ. Core ML cannot run on Linux,
so the spec is read, never predicted."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch
from helpers import DATA, DEMO_CONFIG

from mobileone_dense.apis import build_model, load_config
from mobileone_dense.errors import ExportError
from mobileone_dense.export import coreml, coreml_check, coreml_pipeline
from mobileone_dense.export.coreml_pipeline import OUTPUTS, RAW, THRESHOLDS, VisionNMS
from mobileone_dense.export.numerics import make_image
from mobileone_dense.models import reparameterize_model
from mobileone_dense.tasks import task_of

SIZE = (128, 160)  # not square: a swapped width and height shows
CLASSES = ['ellipse', 'rectangle', 'triangle', 'star', 'cross']


@pytest.fixture(scope='module')
def det() -> SimpleNamespace:
    cfg = load_config(DEMO_CONFIG)
    torch.manual_seed(0)
    network = task_of(cfg).network(reparameterize_model(build_model(cfg)), SIZE)
    return SimpleNamespace(cfg=cfg, network=network, image=make_image(SIZE),
                           nms=VisionNMS(0.45, 0.02, list(CLASSES)))


@pytest.fixture(scope='module')
def package(det, tmp_path_factory) -> SimpleNamespace:
    path = tmp_path_factory.mktemp('vision') / 'model.mlpackage'
    lines = []
    report = coreml.export_coreml(det.network, det.image, path, nms=det.nms, log=lines.append)
    return SimpleNamespace(path=path, report=report, lines=lines)


def _spec(path):
    ct = coreml_check.import_coremltools()
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


# ------------------------------------------------------------------------------ the NMS settings
def test_nms_settings_come_from_test_cfg_and_the_classes(det):
    test_cfg = det.cfg.model.test_cfg  # mmdet's SSD: nms iou_threshold 0.45, score_thr 0.02
    lines = []
    nms = coreml_pipeline.vision_nms(test_cfg, 5, None, lines.append)
    assert (nms.iou_threshold, nms.confidence_threshold) == (
        test_cfg.nms.iou_threshold, test_cfg.score_thr) == (0.45, 0.02)
    assert nms.classes == ['0', '1', '2', '3', '4']
    assert len(lines) == 1 and '0..4' in lines[0]
    lines.clear()
    other = dict(test_cfg, score_thr=0.3, nms=dict(type='nms', iou_threshold=0.6))
    nms = coreml_pipeline.vision_nms(other, 5, tuple(CLASSES), lines.append)
    assert (nms.iou_threshold, nms.confidence_threshold, nms.classes) == (0.6, 0.3, CLASSES)
    assert not lines
    with pytest.raises(ExportError, match='names 3 classes but the detector has 5') as info:
        coreml_pipeline.vision_nms(test_cfg, 5, CLASSES[:3])
    assert '\n' not in str(info.value)
    for bad in (dict(type='soft_nms', iou_threshold=0.5),
                dict(type='nms', iou_threshold=0.5, class_agnostic=True)):
        with pytest.raises(ExportError, match='class-wise hard NMS'):
            coreml_pipeline.vision_nms(dict(test_cfg, nms=bad), 5)


# ------------------------------------------------------------------------------ Vision's boxes
def test_vision_boxes_are_normalised_centres_and_sizes(det):
    """What the program computes (the folded graph on the image input, then VisionBoxes) is
    the network's scores and its x1 y1 x2 y2 pixel boxes as centre x, centre y, width, height
    over the input's width and height, without the batch axis."""
    graph, folding = coreml.image_graph(det.network, det.image)
    vision = coreml_pipeline.VisionBoxes(graph, SIZE).eval()
    image_input = det.image + torch.tensor(folding.bias).view(1, 3, 1, 1)
    with torch.no_grad():
        confidence, coordinates = vision(image_input)
        boxes, scores = det.network(det.image)
    num_anchors = sum(det.network.level_anchors)
    assert confidence.shape == (num_anchors, 5) and coordinates.shape == (num_anchors, 4)
    torch.testing.assert_close(confidence, scores[0], rtol=1e-4, atol=1e-5)
    h, w = SIZE
    x1, y1, x2, y2 = boxes[0].unbind(-1)
    expected = torch.stack([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w,
                            (y2 - y1) / h], -1)
    torch.testing.assert_close(coordinates, expected, rtol=1e-4, atol=1e-5)
    # clipped boxes inside the image: every coordinate within [0, 1]
    assert coordinates.min() >= 0 and coordinates.max() <= 1 + 1e-6
    assert (coordinates[:, 0] - coordinates[:, 2] / 2).min() >= -1e-6


# ------------------------------------------------------------------------------ the package
@pytest.mark.slow
def test_detector_package_is_a_vision_pipeline(det, package):
    r = package.report
    assert r['ok'], r['problems']
    assert 'pipeline check' in package.lines[-1] and 'OK' in package.lines[-1]
    spec = _spec(package.path)
    assert spec.WhichOneof('Type') == 'pipeline' and spec.specificationVersion >= 6  # iOS 15
    program, suppression = spec.pipeline.models
    assert [program.WhichOneof('Type'), suppression.WhichOneof('Type')] == [
        'mlProgram', 'nonMaximumSuppression']
    # the pipeline: a BGR image of the export size, and the two optional thresholds
    image, *thresholds = spec.description.input
    assert (image.name, image.type.imageType.height, image.type.imageType.width) == (
        'image', *SIZE)
    assert [(f.name, f.type.WhichOneof('Type'), f.type.isOptional) for f in thresholds] == [
        (n, 'doubleType', True) for n in THRESHOLDS]
    # outputs: N x 5 confidences and N x 4 coordinates, N as many as NMS keeps
    ranges = {f.name: [(s.lowerBound, s.upperBound)
                       for s in f.type.multiArrayType.shapeRange.sizeRanges]
              for f in spec.description.output}
    assert ranges == {'confidence': [(0, -1), (5, 5)], 'coordinates': [(0, -1), (4, 4)]}
    # the program gives Vision's raw outputs, no batch axis, and reads its weights in the package
    num_anchors = sum(det.network.level_anchors)
    assert [(f.name, list(f.type.multiArrayType.shape)) for f in program.description.output] == [
        (RAW[0], [num_anchors, 5]), (RAW[1], [num_anchors, 4])]
    assert (package.path / 'Data/com.apple.CoreML/weights/weight.bin').stat().st_size > 1e5
    # NMS: the config's thresholds, class-wise like mmdet, labelled with the class names
    p = suppression.nonMaximumSuppression
    assert (p.iouThreshold, p.confidenceThreshold, p.pickTop.perClass) == (0.45, 0.02, True)
    assert list(p.stringClassLabels.vector) == CLASSES
    assert (p.confidenceInputFeatureName, p.coordinatesInputFeatureName) == RAW
    assert (p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName) == OUTPUTS
    meta = spec.description.metadata
    assert meta.userDefined['classes'] == ','.join(CLASSES)
    assert 'NMS' in meta.shortDescription
    assert meta.userDefined['mobileone_dense.precision'] == 'fp16'
    # the per-program check ran on the program inside
    assert r['convs'] == r['expected_convs'] == coreml_check.count_convs(det.network, det.image)
    assert r['batch_norms'] == 0 and r['precision'] == 'fp16' and r['input_ops'] == ['add', 'cast']
    assert r['pipeline']['classes'] == CLASSES and r['pipeline']['per_class']


@pytest.mark.slow
def test_pipeline_check_fails_on_other_settings(det, package):
    """Against other thresholds, labels or size, the same package fails, one sentence each."""
    expected = coreml_check.count_convs(det.network, det.image)
    r = coreml_check.inspect_coreml(package.path, expected, SIZE[::-1],
                                    VisionNMS(0.5, 0.02, CLASSES[::-1]))
    assert not r['ok'] and len(r['problems']) == 3
    assert 'image named image of 160x128' in r['problems'][0]
    assert 'IoU 0.45, confidence 0.02 where the config has 0.5, 0.02' in r['problems'][1]
    assert r['problems'][2].startswith("labels ['ellipse'")
    assert 'FAILED' in r['text']


@pytest.mark.slow
def test_pipeline_check_fails_on_a_damaged_spec(det, package, tmp_path):
    """A copy whose NMS suppresses across classes, whose outputs lost their flexible first
    dimension and whose program lost its weights file is refused for each."""
    ct = coreml_check.import_coremltools()
    copy = tmp_path / 'model.mlpackage'
    shutil.copytree(package.path, copy)
    spec_file = copy / 'Data/com.apple.CoreML/model.mlmodel'
    spec = ct.proto.Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    spec.pipeline.models[1].nonMaximumSuppression.pickTop.perClass = False
    confidence = spec.description.output[0].type.multiArrayType
    confidence.ClearField('shapeRange')
    confidence.shape.extend([100, 5])
    spec_file.write_bytes(spec.SerializeToString())
    (copy / 'Data/com.apple.CoreML/weights/weight.bin').unlink()
    r = coreml_check.inspect_coreml(copy, coreml_check.count_convs(det.network, det.image),
                                    SIZE, det.nms)
    assert not r['ok']
    text = ' | '.join(r['problems'])
    assert 'weights file @model_path/weights/weight.bin is missing' in text
    assert 'the pipeline outputs are not confidence Nx5' in text and 'the NMS outputs' not in text
    assert 'suppresses across classes' in text and len(r['problems']) == 3


@pytest.mark.slow
def test_a_program_is_not_a_pipeline(tmp_path):
    """Where a detector's pipeline is expected, a plain ML program fails the check."""
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    path = coreml.write_coreml(network, torch.zeros(1, 3, 32, 32), tmp_path / 'm.mlpackage',
                               log=lambda _: None)
    r = coreml_check.inspect_coreml(path, 1, (32, 32), VisionNMS(0.5, 0.1, ['a']))
    assert r['pipeline'] is None and r['convs'] == 1
    assert r['problems'] == ['an ML program where a pipeline with NMS for Vision was expected']


# ------------------------------------------------------------------------------ deploy
@pytest.mark.slow
def test_deploy_writes_the_pipeline_with_the_checkpoint_classes(tmp_path):
    """tools/export.py --format coreml on the trained demo detector: the labels are the
    checkpoint's class names, the thresholds its config's test_cfg, the input its test size."""
    from mobileone_dense.deploy.pipeline import export
    lines = []
    report = export(DEMO_CONFIG, DATA / 'demo_models/ssdlite_mobileone_mu0.pth', tmp_path,
                    formats=['coreml'], log=lines.append)
    r = report['coreml']
    assert r['ok'] and r['pipeline']['classes'] == CLASSES
    assert (r['pipeline']['iou_threshold'], r['pipeline']['confidence_threshold']) == (0.45, 0.02)
    assert r['input']['shape'] == [1, 3, 256, 256]
    assert [o['name'] for o in r['outputs']] == list(OUTPUTS)
    assert not any(line.startswith('note: no class names') for line in lines)
    spec = _spec(tmp_path / 'model.mlpackage')
    assert list(spec.pipeline.models[1].nonMaximumSuppression.stringClassLabels.vector) == CLASSES
