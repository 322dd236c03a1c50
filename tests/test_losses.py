"""The class-balanced segmentation loss on inputs with answers worked out by hand."""
import math

import pytest
import torch

import mobileone_dense  # noqa: F401  (registers the loss in mmseg's MODELS)
from mobileone_dense.models.losses import ClassBalancedCrossEntropyLoss


def test_every_present_class_weighs_alike():
    # 1x3 classes, a 2x2 image: three pixels of class 0 with logits (2, 0, 0), one of class 1
    # with logits (0, 0, 0), class 2 absent.
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 2.0
    logits[0, 0, 1, 1] = 0.0
    label = torch.tensor([[[0, 0], [0, 1]]])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 2))  # each class-0 pixel
    ce1 = math.log(3)  # the class-1 pixel: uniform over 3 classes
    loss = ClassBalancedCrossEntropyLoss()(logits, label)
    assert loss.item() == pytest.approx((ce0 + ce1) / 2)  # pixel mean would be (3 ce0 + ce1) / 4
    assert loss.item() != pytest.approx((3 * ce0 + ce1) / 4)


def test_ignored_pixels_and_weight_count_as_in_cross_entropy():
    logits = torch.zeros(1, 2, 1, 3)
    label = torch.tensor([[[0, 1, 255]]])
    loss = ClassBalancedCrossEntropyLoss(loss_weight=2.0)(logits, label, ignore_index=255)
    assert loss.item() == pytest.approx(2 * math.log(2))
    only_ignored = torch.full((1, 1, 3), 255)
    assert ClassBalancedCrossEntropyLoss()(logits, only_ignored).item() == 0


def test_builds_from_an_mmseg_config_and_backpropagates():
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):  # as a segmentation config runs
        loss_fn = MODELS.build(dict(type='ClassBalancedCrossEntropyLoss', loss_weight=0.4))
    assert loss_fn.loss_name == 'loss_ce'
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    loss = loss_fn(logits, torch.randint(0, 4, (2, 8, 8)))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
