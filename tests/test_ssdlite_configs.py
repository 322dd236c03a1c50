"""SSDLite configs: the paper's recipe numbers, and every config builds, trains and predicts;
a whole detector gives the same raw outputs after reparameterization; mmdet's SSDHead can
predict (mobileone_dense.models.mmdet_fix)."""
from pathlib import Path

import pytest
import torch
from helpers import assert_fused_close, calibrate_bn
from mmengine.config import Config

from mobileone_dense import reparameterize_model, stage_channels
from mobileone_dense.apis import build_model
from mobileone_dense.models.mmdet_fix import fix_ssd_head_loss_cls

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / 'configs/ssdlite').glob('mobileone_s[0-4].py'))
ALL = sorted((ROOT / 'configs/ssdlite').glob('*.py'))
APPLE = 'https://docs-assets.developer.apple.com/ml-research/datasets/mobileone/'
MNV2 = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'


def _load(path) -> Config:
    return Config.fromfile(str(path))


def _resize_scales(pipeline):
    return [tuple(t['scale']) for t in pipeline if t['type'] == 'Resize']


def test_the_five_paper_configs_exist():
    assert [p.stem for p in PAPER] == [f'mobileone_s{i}' for i in range(5)]


@pytest.mark.parametrize('path', PAPER, ids=lambda p: p.stem)
def test_paper_recipe(path):
    cfg = _load(path)
    variant = path.stem.split('_')[1]
    # model: stride-16/32 backbone outputs feed the SSD neck, six levels, 80 classes
    backbone, neck, head = cfg.model.backbone, cfg.model.neck, cfg.model.bbox_head
    assert backbone.type == 'MobileOne' and backbone.arch == variant
    assert tuple(backbone.out_indices) == (3, 4)
    channels = tuple(stage_channels(variant, (3, 4)))
    assert tuple(neck.in_channels) == channels
    assert len(neck.out_channels) == 6 and tuple(neck.out_channels[:2]) == channels
    assert neck.use_depthwise and head.use_depthwise
    assert tuple(head.in_channels) == tuple(neck.out_channels)
    assert head.type == 'SSDHead' and head.num_classes == 80
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'{APPLE}mobileone_{variant}_unfused.pth.tar')
    # schedule: 200 epochs over COCO itself (no repeat wrapper)
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 200
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.train_dataloader.dataset.ann_file == 'annotations/instances_train2017.json'
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 0.05, 0.9, 1e-4)
    assert cfg.train_dataloader.batch_size == 24
    assert cfg.auto_scale_lr.base_batch_size == 192
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch) == ('LinearLR', 0.001, False)
    assert (warmup.begin, warmup.end) == (0, 4500)
    assert (cosine.type, cosine.by_epoch, cosine.eta_min) == ('CosineAnnealingLR', True, 0)
    assert (cosine.begin, cosine.end, cosine.T_max) == (0, 200, 200)
    # input 320x320 for training and testing
    assert _resize_scales(cfg.train_dataloader.dataset.pipeline) == [(320, 320)]
    assert _resize_scales(cfg.test_dataloader.dataset.pipeline) == [(320, 320)]
    assert cfg.val_evaluator.type == 'CocoMetric' and cfg.val_evaluator.metric == 'bbox'


def test_variant_configs_are_thin_deltas():
    """Only the variant and the neck's input channels differ between the five files."""
    base = _load(PAPER[0])
    for path in PAPER[1:]:
        cfg = _load(path)
        variant = path.stem.split('_')[1]
        channels = tuple(stage_channels(variant, (3, 4)))
        for key in ('train_cfg', 'optim_wrapper', 'param_scheduler', 'train_dataloader',
                    'test_dataloader', 'auto_scale_lr'):
            assert cfg[key] == base[key], (path.stem, key)
        assert tuple(cfg.model.neck.out_channels[2:]) == tuple(base.model.neck.out_channels[2:])
        assert tuple(cfg.model.bbox_head.in_channels[:2]) == channels


def _batch(model, size: int, num_classes: int, n: int = 2):
    """A data-preprocessed batch of ``n`` random images with two boxes each."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        scale_factor=(1.0, 1.0)))
        xy = torch.rand(2, 2, generator=g) * size / 2
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + size / 3], 1),
                                      labels=torch.randint(0, num_classes, (2, ), generator=g))
        samples.append(s)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
              for _ in range(n)]
    return model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)


def _build(path):
    """The detector of a config, initialised as a Runner does, pretrained download off."""
    cfg = _load(path)
    cfg.model.backbone.init_cfg = None
    return build_model(cfg, pretrained=True), cfg


@pytest.mark.slow
@pytest.mark.parametrize('path', ALL, ids=lambda p: p.stem)
def test_config_builds_trains_and_predicts(path):
    model, cfg = _build(path)
    num_classes = cfg.model.bbox_head.num_classes
    data = _batch(model, 96, num_classes)
    model.train()
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(sum(v) if isinstance(v, list) else v for v in losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert model.backbone.stage0.rbr_conv[0].conv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'])
    assert len(results) == 2
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1:] == (4, ) and pred.scores.shape == pred.labels.shape
    assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()


def test_mmdet_ssdlite_mobilenetv2_predicts():
    """The benchmarks' peer, mmdet's own SSDLite-MobileNetV2 config, predicts once
    mobileone_dense is imported (mmdet 3.3.0's SSDHead lacks loss_cls)."""
    from mmdet.structures import DetDataSample
    from mmengine.hub import get_config
    model = build_model(get_config(MNV2))  # mmdet's scope, no pretrained download
    assert model.bbox_head.loss_cls is None
    model.bbox_head.test_cfg['score_thr'] = 0.0  # keep boxes, so the softmax path runs
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(320, 320),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        pred = model.predict(torch.rand(1, 3, 320, 320), [sample])[0].pred_instances
    assert len(pred) > 0 and (pred.labels < 80).all()
    assert torch.all((pred.scores > 0) & (pred.scores < 1))


def test_ssd_head_fix_is_idempotent():
    from mmdet.models.dense_heads import SSDHead
    init = SSDHead.__init__
    assert fix_ssd_head_loss_cls() and fix_ssd_head_loss_cls()
    assert SSDHead.__init__ is init  # not wrapped twice
    assert not hasattr(init.__wrapped__, '__wrapped__')


def test_ssd_head_fix_keeps_a_subclass_loss_cls():
    from mmdet.models.dense_heads import SSDHead
    from mmdet.models.losses import CrossEntropyLoss

    class HeadWithLoss(SSDHead):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.loss_cls = CrossEntropyLoss()

    anchors = _load(PAPER[0]).model.bbox_head.anchor_generator
    head = HeadWithLoss(num_classes=3, in_channels=(8, ) * 6, anchor_generator=anchors)
    assert isinstance(head.loss_cls, CrossEntropyLoss) and 'loss_cls' in head._modules
    plain = SSDHead(num_classes=3, in_channels=(8, ) * 6, anchor_generator=anchors)
    assert plain.loss_cls is None and not any('loss_cls' in k for k in plain.state_dict())


@pytest.mark.parametrize('path', PAPER, ids=lambda p: p.stem)
def test_whole_detector_reparameterizes_exactly(path):
    """Issue 2 on a whole SSDLite detector: after reparameterize_model, the raw head outputs
    (every level's class scores and box deltas) are those of the eval-mode train-time model.
    In float64, with BN statistics measured at the test size (the neck's extra levels
    normalise large backbone activations, so mismatched statistics would amplify rounding):
    rounding stays near 1e-12, while a fused bias off by 0.1 % of its mean moves the outputs
    by 1e-4 or more; the bound, 1e5 float64 epsilons (2.2e-11), sits between the two."""
    model, _ = _build(path)
    calibrate_bn(model, seed=1, size=96).double()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)  # mode='tensor': (cls_scores per level, bbox_preds per level)
        fused = reparameterize_model(model)
        actual = fused(x)
    assert fused.backbone.deployed and not model.backbone.deployed
    for exp_level, act_level in zip(expected, actual):
        assert len(exp_level) == len(act_level) == 6
        for e, a in zip(exp_level, act_level):
            assert_fused_close(a, e, ulps=1e5)
