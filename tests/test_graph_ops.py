"""The exported graphs' own ops (mobileone_dense/export/): class-wise NMS, both its kernels
checked against mmcv's ``batched_nms`` (what mmdet's heads run) and hand-worked cases, and the
folding of the normalisation's BGR->RGB swap into the first convolution, checked against the
unfolded network, its refusals, and the LiteRT file it leaves (no channel-reversal op)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import mobileone_dense  # noqa: F401  (registers the custom ops' dependencies)
from mobileone_dense.export.graph import Normalize, fold_normalization
from mobileone_dense.export.nms import class_nms
from mobileone_dense.export.numerics import make_image


def _candidates(count: int, classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(count, 2, generator=g) * 200
    sizes = torch.rand(count, 2, generator=g) * 60 + 5
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], 1).clamp(0, 200)
    scores = torch.rand(count, generator=g)
    labels = torch.randint(0, classes, (count, ), generator=g)
    return boxes, scores, labels


def _per_class(scores: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """The ``CxN`` score rows of :func:`class_nms`: each box's score in its class, -1
    elsewhere."""
    dense = torch.full((classes, len(scores)), -1.0)
    dense[labels, torch.arange(len(scores))] = scores
    return dense


@pytest.mark.parametrize('count,classes,score_thr,max_output',
                         [(600, 20, 0.0, 100), (3000, 80, 0.3, 200), (50, 3, 0.9, 10),
                          (400, 2, 0.0, 1000)])
def test_class_nms_matches_mmcv_batched_nms(count, classes, score_thr, max_output):
    from mmcv.ops import batched_nms
    boxes, scores, labels = _candidates(count, classes)
    kept = class_nms(boxes, _per_class(scores, labels, classes), 0.45, score_thr, max_output)
    valid = (scores > score_thr).nonzero().squeeze(1)
    _, order = batched_nms(boxes[valid], scores[valid], labels[valid],
                           dict(type='nms', iou_threshold=0.45))
    expected = valid[order][:max_output]
    assert kept.dtype == torch.long and kept.shape == (len(expected), 2)
    torch.testing.assert_close(kept[:, 1], expected)
    torch.testing.assert_close(kept[:, 0], labels[expected])
    assert torch.all(scores[kept[:-1, 1]] >= scores[kept[1:, 1]])  # by decreasing score


def test_class_nms_suppresses_within_a_class_only():
    box = [10.0, 10.0, 50.0, 50.0]
    shifted = [12.0, 12.0, 52.0, 52.0]  # IoU with box: 38*38 / (2*1600 - 38*38) = 0.82
    far = [100.0, 100.0, 120.0, 120.0]
    boxes = torch.tensor([box, shifted, far])
    # class 0: box 0.9, shifted 0.8, far 0.1; class 1: box 0.7 (the same box, another class)
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.7, -1.0, -1.0]])

    def kept(iou, score_thr, max_output):
        return class_nms(boxes, scores, iou, score_thr, max_output).tolist()
    # shifted overlaps box in its class and goes; box in class 1 stays; far is alone
    assert kept(0.5, 0.0, 10) == [[0, 0], [1, 0], [0, 2]]
    assert kept(0.9, 0.0, 10) == [[0, 0], [0, 1], [1, 0], [0, 2]]
    assert kept(0.5, 0.75, 10) == [[0, 0]]
    assert kept(0.5, 0.0, 2) == [[0, 0], [1, 0]]
    assert kept(0.5, 0.95, 10) == []
    assert class_nms(boxes, scores, 0.5, 0.0, 0).shape == (0, 2)


def test_class_nms_ties_come_out_by_class():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([[0.5, -1.0], [-1.0, 0.6], [-1.0, 0.5]])
    assert class_nms(boxes, scores, 0.5, 0.0, 10).tolist() == [[1, 1], [0, 0], [2, 1]]


def _selection_reference(boxes, scores, levels, cfg):
    """mmdet's test-time selection written out plainly: per level the ``nms_pre`` best
    (anchor, class) scores, the score threshold and ``min_bbox_size``, mmcv's ``batched_nms``
    over all of them, the ``max_per_img`` best."""
    from mmcv.ops import batched_nms
    classes = scores.shape[1]
    picked, start = [], 0
    for count in levels:
        top, idx = scores[start:start + count].reshape(-1).topk(cfg['nms_pre'])
        picked.append((top, idx // classes + start, idx % classes))
        start += count
    top, anchors, labels = (torch.cat(p) for p in zip(*picked))
    wh = boxes[anchors, 2:] - boxes[anchors, :2]
    valid = (top > cfg['score_thr']) & (wh > cfg['min_bbox_size']).all(1)
    top, anchors, labels = top[valid], anchors[valid], labels[valid]
    _, order = batched_nms(boxes[anchors], top, labels, cfg['nms'])
    order = order[:cfg['max_per_img']]
    return boxes[anchors[order]], top[order], labels[order]


@pytest.mark.parametrize('levels', [[300, 80, 12], [500]])
@pytest.mark.parametrize('score_thr,min_bbox_size', [(0.0, 0), (0.9, 20)])
@pytest.mark.parametrize('spread', ['apart', 'piled'])
def test_detector_postprocess_is_mmdets_selection(spread, score_thr, min_bbox_size,
                                                  levels, monkeypatch):
    """The detections are those of mmdet's selection: with the best candidates' head start
    taken (boxes apart: NMS keeps most) and given up (boxes piled on each other: one per class
    survives, fewer than max_per_img), at full load (score threshold 0) and with thresholds,
    and without the head start (as in an exported graph)."""
    from mmengine.config import ConfigDict

    from mobileone_dense.tasks.detection_graph import DetectorPostprocess
    classes = 6
    cfg = ConfigDict(nms_pre=60, score_thr=score_thr, min_bbox_size=min_bbox_size,
                     max_per_img=20, nms=dict(type='nms', iou_threshold=0.45))
    boxes, _, _ = _candidates(sum(levels), 1, seed=3)
    if spread == 'piled':
        jitter = torch.rand(len(boxes), 4, generator=torch.Generator().manual_seed(4))
        boxes = torch.tensor([[50.0, 50.0, 120.0, 120.0]]) + jitter
    scores = torch.rand(sum(levels), classes, generator=torch.Generator().manual_seed(5))
    post = DetectorPostprocess(ConfigDict(test_cfg=cfg, num_classes=classes), levels)
    calls = []
    nms_runs = post._nms
    monkeypatch.setattr(post, '_nms', lambda *a: calls.append(1) or nms_runs(*a))
    expected = _selection_reference(boxes, scores, levels, cfg)
    actual = post(boxes[None], scores[None])
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    if score_thr == 0:
        assert len(calls) == (1 if spread == 'apart' else 2)  # head start taken / given up
        assert len(actual[0]) == (cfg.max_per_img if spread == 'apart' else classes)
    monkeypatch.setattr(torch.compiler, 'is_exporting', lambda: True)
    calls.clear()
    for a, e in zip(post(boxes[None], scores[None]), expected):
        torch.testing.assert_close(a, e)
    assert len(calls) == 1


class _Preprocessor(nn.Module):
    """What :class:`Normalize` reads from mmdet's DetDataPreprocessor."""

    def __init__(self, swap: bool) -> None:
        super().__init__()
        self._channel_conversion = swap
        self._enable_normalize = True
        self.register_buffer('mean', torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1))
        self.register_buffer('std', torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1))


class _Net(nn.Module):
    def __init__(self, swap: bool = True, reuse: bool = False, groups: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.normalize = Normalize(_Preprocessor(swap))
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=groups)
        self.act = nn.ReLU()
        self.head = nn.Conv2d(6, 4, 1)
        self.reuse = reuse

    def forward(self, image):
        x = self.normalize(image)
        y = self.head(self.act(self.conv(x)))
        if self.reuse:  # the normalised image used again, outside a module
            y = y + x[:, :1, ::2, ::2].mean()
        return (y, )


@pytest.mark.parametrize('swap', [True, False])
def test_fold_normalization_leaves_only_the_mean_in_front_of_the_first_conv(swap):
    net = _Net(swap).eval()
    image = make_image((32, 32), seed=3)
    folded = fold_normalization(net, image)
    assert folded is not net and net.normalize.swap == swap and net.normalize.std is not None
    assert not folded.normalize.swap and folded.normalize.std is None
    order = (lambda t: t.flip(1)) if swap else (lambda t: t)
    std = net.normalize.std  # 1x3x1x1, the network's (RGB) channel order
    torch.testing.assert_close(folded.conv.weight, order(net.conv.weight / std))
    torch.testing.assert_close(folded.normalize.mean, order(net.normalize.mean))
    # the image as it comes (BGR), the mean in its order
    torch.testing.assert_close(folded.normalize(image), image - order(net.normalize.mean))
    other = make_image((32, 32), seed=4)  # not the image the fold was checked on
    with torch.no_grad():
        torch.testing.assert_close(folded(other)[0], net(other)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('case', [dict(reuse=True), dict(groups=3)])
def test_fold_normalization_leaves_what_it_cannot_fold(case):
    net = _Net(**case).eval()
    assert fold_normalization(net, make_image((32, 32), seed=3)) is net


def test_fold_normalization_of_a_folded_network_is_a_no_op():
    image = make_image((32, 32), seed=3)
    folded = fold_normalization(_Net().eval(), image)
    assert fold_normalization(folded, image) is folded


@pytest.mark.slow
@pytest.mark.parametrize('int8', [False, True])
def test_tflite_runs_only_the_mean_subtraction_before_the_first_conv(int8, tmp_path):
    """No channel reversal (``REVERSE_V2``, outside XNNPACK) and no multiply: a full pass over
    the float image that cost MobileOne-S0's INT8 backbone at 224 about 15% of its time."""
    from ai_edge_litert.interpreter import Interpreter

    from mobileone_dense.export.litert import write_tflite
    from mobileone_dense.runtimes.litert import LiteRTModel
    net = _Net().eval()
    if int8:  # what INT8 quantizes is a network's core
        net = _Wrapped(net, unpack=True).eval()
    image = make_image((32, 32), seed=3)
    calibration = [make_image((32, 32), seed) for seed in (5, 6)] if int8 else None
    path = write_tflite(net, image, tmp_path / 'net.tflite', calibration=calibration)
    ops = [op['op_name'] for op in Interpreter(model_path=str(path))._get_ops_details()]
    first_conv = ops.index('CONV_2D')
    assert ops[:first_conv] in (['SUB', 'QUANTIZE', 'PAD'] if int8 else ['SUB', 'PAD'],
                                ['SUB', 'QUANTIZE'] if int8 else ['SUB'])
    assert not {'REVERSE_V2', 'MUL', 'DIV'} & set(ops)
    (out, ) = LiteRTModel(path, threads=1)(image.numpy())
    with torch.no_grad():
        expected = net(image)[0]
    if int8:
        assert torch.corrcoef(torch.stack([torch.as_tensor(out).flatten(),
                                           expected.flatten()]))[0, 1] > 0.99
    else:
        torch.testing.assert_close(torch.as_tensor(out), expected, rtol=1e-4, atol=1e-4)


class _Residuals(nn.Module):
    """Two chained residual blocks, as in MobileNetV2 (the second add takes the first's
    output)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = nn.Conv2d(8, 8, 1)
        self.block2 = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, image):
        x = self.stem(image / 255)
        x = x + self.block1(x)
        x = x + self.block2(x)
        return self.head(x)


class _Wrapped(nn.Module):
    """What write_tflite quantizes: a network whose ``core`` is the int8 part (``unpack``: a
    core that gives a one-tensor tuple)."""

    def __init__(self, core: nn.Module, unpack: bool = False) -> None:
        super().__init__()
        self.core, self.unpack = core, unpack

    def forward(self, image):
        out = self.core(image)
        return tuple(out) if self.unpack else (out, )


@pytest.mark.slow
def test_int8_residual_adds_run_in_int8(tmp_path):
    """Chained residual adds are int8 ADDs in the INT8 file, not DEQUANTIZE -> float ADD ->
    QUANTIZE (what litert-torch's quantizer left them, finding no add to mark under torch
    2.13's export), and the file still follows the float network."""
    from ai_edge_litert.interpreter import Interpreter

    from mobileone_dense.export.litert import write_tflite
    from mobileone_dense.export.numerics import correlation
    from mobileone_dense.runtimes.litert import LiteRTModel
    net = _Wrapped(_Residuals()).eval()
    calibration = [make_image((16, 16), seed=s) for s in range(4)]
    path = write_tflite(net, calibration[0], tmp_path / 'net_int8.tflite', calibration=calibration)
    interpreter = Interpreter(model_path=str(path))
    dtypes = {t['index']: t['dtype'] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    adds = [op for op in ops if op['op_name'] == 'ADD']
    assert len(adds) == 2
    assert all(dtypes[i].__name__ == 'int8' for op in adds for i in op['inputs'])
    assert sum(op['op_name'] == 'DEQUANTIZE' for op in ops) <= 1  # the output's, at most
    image = make_image((16, 16), seed=9)
    (out, ) = LiteRTModel(path, threads=1)(image.numpy())
    with torch.no_grad():
        assert correlation([out], [net(image)[0]]) > 0.99
