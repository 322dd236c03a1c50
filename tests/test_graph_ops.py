"""The exported graphs' own ops (mobileone_dense/export/graph.py): class-wise NMS, checked
against mmcv's ``batched_nms`` (what mmdet's heads run) and a hand-worked case, and the folding
of the normalisation's BGR->RGB swap into the first convolution, checked against the unfolded
network, its refusals, and the LiteRT file it leaves (no channel-reversal op)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import mobileone_dense  # noqa: F401  (registers the custom ops' dependencies)
from mobileone_dense.export.graph import Normalize, class_nms, fold_channel_swap
from mobileone_dense.export.numerics import make_image


def _candidates(count: int, classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(count, 2, generator=g) * 200
    sizes = torch.rand(count, 2, generator=g) * 60 + 5
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], 1).clamp(0, 200)
    scores = torch.rand(count, generator=g)
    labels = torch.randint(0, classes, (count, ), generator=g)
    return boxes, scores, labels


@pytest.mark.parametrize('count,classes,score_thr,max_output',
                         [(600, 20, 0.0, 100), (3000, 80, 0.3, 200), (50, 3, 0.9, 10)])
def test_class_nms_matches_mmcv_batched_nms(count, classes, score_thr, max_output):
    from mmcv.ops import batched_nms
    boxes, scores, labels = _candidates(count, classes)
    keep = class_nms(boxes, scores, labels, 0.45, score_thr, max_output)
    valid = (scores > score_thr).nonzero().squeeze(1)
    _, kept = batched_nms(boxes[valid], scores[valid], labels[valid],
                          dict(type='nms', iou_threshold=0.45))
    expected = valid[kept][:max_output]
    assert keep.dtype == torch.long
    torch.testing.assert_close(keep, expected)
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])  # by decreasing score


def test_class_nms_suppresses_within_a_class_only():
    box = [10.0, 10.0, 50.0, 50.0]
    shifted = [12.0, 12.0, 52.0, 52.0]  # IoU with box: 38*38 / (2*1600 - 38*38) = 0.82
    far = [100.0, 100.0, 120.0, 120.0]
    boxes = torch.tensor([box, shifted, box, far])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    labels = torch.tensor([0, 0, 1, 0])
    # 1 overlaps 0 in its class and goes; 2 overlaps 0 but is another class; 3 is alone
    assert class_nms(boxes, scores, labels, 0.5, 0.0, 10).tolist() == [0, 2, 3]
    assert class_nms(boxes, scores, labels, 0.9, 0.0, 10).tolist() == [0, 1, 2, 3]
    assert class_nms(boxes, scores, labels, 0.5, 0.75, 10).tolist() == [0]
    assert class_nms(boxes, scores, labels, 0.5, 0.0, 2).tolist() == [0, 2]
    assert class_nms(boxes, scores, labels, 0.5, 0.95, 10).numel() == 0


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


def test_fold_channel_swap_gives_the_same_function_without_the_swap():
    net = _Net().eval()
    image = make_image((32, 32), seed=3)
    folded = fold_channel_swap(net, image)
    assert folded is not net and not folded.normalize.swap and net.normalize.swap
    torch.testing.assert_close(folded.conv.weight, net.conv.weight.flip(1))
    torch.testing.assert_close(folded.normalize.mean, net.normalize.mean.flip(1))
    other = make_image((32, 32), seed=4)  # not the image the fold was checked on
    with torch.no_grad():
        torch.testing.assert_close(folded(other)[0], net(other)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('case', [dict(swap=False), dict(reuse=True), dict(groups=3)])
def test_fold_channel_swap_leaves_what_it_cannot_fold(case):
    net = _Net(**case).eval()
    assert fold_channel_swap(net, make_image((32, 32), seed=3)) is net


def test_tflite_of_a_swapping_network_has_no_channel_reversal(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mobileone_dense.export.litert import write_tflite
    from mobileone_dense.runtimes.litert import LiteRTModel
    net = _Net().eval()
    image = make_image((32, 32), seed=3)
    path = write_tflite(net, image, tmp_path / 'net.tflite')
    ops = {op['op_name'] for op in Interpreter(model_path=str(path))._get_ops_details()}
    assert 'CONV_2D' in ops and 'REVERSE_V2' not in ops
    (out, ) = LiteRTModel(path, threads=1)(image.numpy())
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(out), net(image)[0], rtol=1e-4, atol=1e-4)
