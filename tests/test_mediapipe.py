"""The LiteRT files in MediaPipe Tasks, the client Android, iOS and web apps run them with: its
ObjectDetector and ImageSegmenter load them as they are (metadata: labels, input, decoding)
and give what our tools give."""
from __future__ import annotations

import sys

import mmcv
import pytest
import torch
from helpers import call_tool, error_line, held_out_images
from torch import nn

from mobileone_dense.apis import load_config
from mobileone_dense.deploy.evaluate import DeployedModel, evaluate_deployed
from mobileone_dense.deploy.mediapipe_client import MediaPipeModel
from mobileone_dense.deploy.pipeline import _class_names
from mobileone_dense.errors import ExportError, UsageError
from mobileone_dense.export.litert import write_tflite
from mobileone_dense.export.litert_metadata import has_metadata, write_metadata

#: How far MediaPipe's box mAP may lie from our tools' on the same file: MediaPipe keeps the
#: best class of each anchor and runs its own NMS, where mmdet keeps every class above the
#: score threshold and suppresses within each class; its boxes come in whole pixels.
MAX_MAP_GAP = 0.02
#: ... and its mIoU (points): the category mask is the same argmax at the input size.
MAX_MIOU_GAP = 0.5


@pytest.fixture(scope='module', params=['det', 'seg'])
def exported(request, demo_exports):
    return demo_exports[request.param]


@pytest.fixture
def clients(exported):
    cfg = load_config(exported['config'])
    models = [MediaPipeModel(cfg, exported['tflite']), DeployedModel(cfg, exported['tflite'])]
    yield models
    models[0].close()


@pytest.mark.slow  # the session's export
def test_labels_and_predictions_match_our_tools_on_a_held_out_image(exported, clients):
    """MediaPipe's detections on one scene equal ours (boxes within 1 px, same labels) and name
    the checkpoint's classes; its category mask is our class map."""
    mediapipe, ours = clients
    image = mmcv.imread(held_out_images(exported['data'])[0])
    image = mmcv.imresize(image, exported['size'][::-1])  # at the input size: no resize
    if exported['case'] == 'seg':
        mask, expected = mediapipe.predict(image)[1], ours.predict(image)[1]
        assert mask.shape == expected.shape
        assert (mask == expected).double().mean() >= 0.999
        assert set(mask.unique().tolist()) - {0}  # a scene shows a shape, not only background
        return
    picture = mediapipe._mp.Image(image_format=mediapipe._mp.ImageFormat.SRGB,
                                  data=image[..., ::-1].copy())
    names = {d.categories[0].category_name for d in mediapipe.client.detect(picture).detections}
    assert names and names <= set(exported['classes'])
    boxes, scores, labels = mediapipe.predict(image)
    ours_boxes, ours_scores, ours_labels = ours.predict(image)
    keep, ours_keep = scores > 0.3, ours_scores > 0.3
    boxes, labels = boxes[keep], labels[keep]
    ours_boxes, ours_labels = ours_boxes[ours_keep], ours_labels[ours_keep]
    assert len(boxes) == len(ours_boxes) > 0
    for box, label in zip(boxes, labels):
        distance = (ours_boxes - box).abs().max(dim=1).values
        best = int(distance.argmin())
        assert distance[best] <= 1.0 and ours_labels[best] == label, (box, ours_boxes)


@pytest.mark.slow
@pytest.mark.parametrize('file', ['tflite', 'int8'])
def test_mediapipe_scores_as_our_tools_on_the_same_file(exported, file):
    cfg = load_config(exported['config'])
    key = 'coco/bbox_mAP' if exported['case'] == 'det' else 'mIoU'
    ours = evaluate_deployed(cfg, exported[file], threads=2)[key]
    mediapipe = MediaPipeModel(cfg, exported[file])
    try:
        theirs = evaluate_deployed(cfg, mediapipe)[key]
    finally:
        mediapipe.close()
    gap = MAX_MAP_GAP if exported['case'] == 'det' else MAX_MIOU_GAP
    assert abs(theirs - ours) <= gap, (theirs, ours)
    assert ours >= (0.5 if exported['case'] == 'det' else 50), ours  # a trained model


@pytest.mark.slow  # a conversion
def test_a_file_without_metadata_is_one_sentence(tmp_path):
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    path = write_tflite(network, torch.rand(1, 3, 32, 32) * 255, tmp_path / 'bare.tflite')
    assert not has_metadata(path)
    cfg = load_config('configs/ssdlite/mobileone_mu0_demo.py')
    with pytest.raises(ExportError, match='has no MediaPipe metadata.*export it again'):
        MediaPipeModel(cfg, path)


def test_checkpoint_without_class_names_labels_them_by_number():
    lines = []
    model = nn.Module()
    model.bbox_head = nn.Module()
    model.bbox_head.num_classes = 3
    assert _class_names({}, model, ['tflite'], lines.append) == ['0', '1', '2']
    assert len(lines) == 1 and 'names no classes' in lines[0] and '0..2' in lines[0]
    assert _class_names({'dataset_meta': {'classes': ('a', 'b')}}, model, ['tflite'],
                        lines.append) == ['a', 'b'] and len(lines) == 1


def test_out_dir_that_is_a_file_is_one_sentence(tmp_path, capsys):
    taken = tmp_path / 'deploy'
    taken.write_text('not a folder')
    status, err = call_tool('export', 'configs/ssdlite/mobileone_mu0_demo.py',
                            tmp_path / 'missing.pth', '--out-dir', taken, capsys=capsys)
    assert 'is an existing file: give a folder' in error_line(status, err)
    assert taken.read_text() == 'not a folder'


def test_client_mediapipe_wants_a_tflite(tmp_path, capsys):
    status, err = call_tool('test', 'configs/ssdlite/mobileone_mu0_demo.py', tmp_path / 'x.pth',
                            '--client', 'mediapipe', capsys=capsys)
    assert '--client mediapipe runs LiteRT files' in error_line(status, err)


def test_mediapipe_missing_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'mediapipe', None)  # import mediapipe fails
    with pytest.raises(UsageError, match='needs the mediapipe package: make install'):
        MediaPipeModel(load_config('configs/ssdlite/mobileone_mu0_demo.py'), tmp_path / 'm.tflite')
    with pytest.raises(ExportError, match='needs the mediapipe package: make install'):
        write_metadata(tmp_path / 'm.tflite', 'detection', ['a'])
