"""DeepLabV3-MobileOne configs: the paper's recipe (SPEC section 2), that every config builds and
trains on a tiny input, output stride 8, exact reparameterization of a whole segmentor, and the
COCO -> VOC mask converter."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_fused_close, calibrate_bn
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import mobileone_dense
from mobileone_dense import stage_channels
from mobileone_dense.apis import PAPER_VARIANTS, build_model, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / 'configs' / 'deeplabv3'
VARIANTS = PAPER_VARIANTS  # s0..s4 (the arch table's; tests/conftest.py checks it)
DATASETS = {'voc': 21, 'voc_coco': 21, 'ade20k': 150}
PAPER_CONFIGS = [f'mobileone_{v}_{d}.py' for d in DATASETS for v in VARIANTS]
ALL_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob('*.py'))
APPLE = 'https://docs-assets.developer.apple.com/ml-research/datasets/mobileone/'


@lru_cache(maxsize=None)
def load(name: str) -> Config:
    return Config.fromfile(CONFIG_DIR / name)


def build_segmentor(name: str) -> torch.nn.Module:
    """The segmentor of a config, initialised as a Runner does, with the pretrained backbone
    weights switched off (no network)."""
    cfg = load_config(CONFIG_DIR / name)
    cfg.model.backbone.init_cfg = None
    assert cfg.model.get('pretrained') is None
    return build_model(cfg, pretrained=True)


def _variant_dataset(name: str) -> tuple[str, str]:
    variant, dataset = name[len('mobileone_'):-len('.py')].split('_', 1)
    return variant, dataset


def test_every_paper_config_exists():
    missing = [n for n in PAPER_CONFIGS if n not in ALL_CONFIGS]
    assert not missing, f'missing configs: {missing}'


# ------------------------------------------------------------------------------------ recipe

@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_model_recipe(name):
    variant, dataset = _variant_dataset(name)
    model = load(name).model
    assert model.type == 'EncoderDecoder' and model.get('pretrained') is None
    backbone = model.backbone
    assert backbone.type == 'MobileOne' and backbone.arch == variant
    assert tuple(backbone.strides) == (2, 2, 2, 1, 1)
    assert tuple(backbone.dilations) == (1, 1, 1, 2, 4)
    assert tuple(backbone.out_indices) == (3, 4)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'{APPLE}mobileone_{variant}_unfused.pth.tar')
    c3, c4 = stage_channels(variant, (3, 4))
    head, aux = model.decode_head, model.auxiliary_head
    assert (head.type, head.in_channels, head.in_index) == ('ASPPHead', c4, 1)
    assert (head.channels, tuple(head.dilations), head.dropout_ratio) == (512, (1, 12, 24, 36),
                                                                          0.1)
    assert (aux.type, aux.in_channels, aux.in_index) == ('FCNHead', c3, 0)
    assert head.loss_decode.loss_weight == 1.0 and aux.loss_decode.loss_weight == 0.4
    assert head.num_classes == aux.num_classes == DATASETS[dataset]
    assert tuple(model.data_preprocessor.size) == (512, 512)


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_schedule_recipe(name):
    cfg = load(name)
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == 1e-4 and optim.optimizer.weight_decay == 0.01
    assert optim.paramwise_cfg.custom_keys == {'decode_head': dict(lr_mult=10.0),
                                               'auxiliary_head': dict(lr_mult=10.0)}
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.begin, warmup.end) == ('LinearLR', False, 0, 500)
    assert cosine.type == 'CosineAnnealingLR' and cosine.by_epoch and cosine.end == 50
    assert cosine.eta_min_ratio * optim.optimizer.lr == pytest.approx(1e-6)
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=50, val_interval=5)
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and ema[0].momentum == 5e-4 and ema[0].update_buffers
    assert cfg.train_dataloader.batch_size == 8 and cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.train_dataloader.sampler.type == 'DefaultSampler'
    assert cfg.val_evaluator.type == 'IoUMetric' and cfg.val_evaluator.iou_metrics == ['mIoU']


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_data_recipe(name):
    _, dataset = _variant_dataset(name)
    cfg = load(name)
    train = cfg.train_dataloader.dataset
    parts = train.datasets if train.type == 'ConcatDataset' else [train]
    for part in parts:
        steps = part.pipeline
        # Only random resize, random crop and horizontal flip, between loading and packing.
        assert [s.type for s in steps] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomResize',
                                           'RandomCrop', 'RandomFlip', 'PackSegInputs']
        resize, crop, flip = steps[2], steps[3], steps[4]
        assert tuple(resize.ratio_range) == (0.5, 2.0) and resize.keep_ratio
        assert tuple(crop.crop_size) == (512, 512) and crop.get('cat_max_ratio', 1.0) == 1.0
        assert flip.prob == 0.5
        assert steps[1].get('reduce_zero_label', False) == (dataset == 'ade20k')
    val = cfg.val_dataloader.dataset
    if dataset == 'ade20k':
        assert train.type == val.type == 'ADE20KDataset'
        assert train.data_prefix.img_path == 'images/training'
        assert val.data_prefix.img_path == 'images/validation'
        return
    voc = 'data/VOCdevkit/VOC2012'
    expected = [(voc, 'SegmentationClass', 'ImageSets/Segmentation/train.txt'),
                (voc, 'SegmentationClassAug', 'ImageSets/Segmentation/aug.txt')]
    if dataset == 'voc_coco':
        expected.append(('data/coco', 'voc_masks/train2017', 'voc_masks/train2017.txt'))
    assert [(p.data_root, p.data_prefix.seg_map_path, p.ann_file) for p in parts] == expected
    assert all(p.type == 'PascalVOCDataset' for p in parts)
    assert (val.type, val.data_root, val.ann_file) == ('PascalVOCDataset', voc,
                                                       'ImageSets/Segmentation/val.txt')


def test_head_multiplier_reaches_the_optimizer():
    """mmengine's optimizer constructor gives both heads 10x the lr, the backbone 1x."""
    from mmengine.optim import build_optim_wrapper
    model = build_segmentor('mobileone_s0_voc.py')
    wrapper = build_optim_wrapper(model, load('mobileone_s0_voc.py').optim_wrapper)
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
    lr_of = {id(p): g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    wd_of = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    seen = set()
    for name, p in model.named_parameters():
        part = name.split('.')[0]
        seen.add(part)
        expected = 1e-3 if part in ('decode_head', 'auxiliary_head') else 1e-4
        assert lr_of[id(p)] == pytest.approx(expected), name
        assert wd_of[id(p)] == 0.01, name
    assert seen == {'backbone', 'decode_head', 'auxiliary_head'}


def test_lr_follows_warmup_then_cosine_to_1e6():
    """Run the config's schedulers as mmengine's runner builds them (100 iterations an epoch)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = load('mobileone_s0_voc.py')
    model = torch.nn.ModuleDict(dict(backbone=torch.nn.Linear(2, 2),
                                     decode_head=torch.nn.Linear(2, 2)))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    epoch_length, total = 100, 100 * cfg.train_cfg.max_epochs
    schedulers = [PARAM_SCHEDULERS.build(s, default_args=dict(optimizer=wrapper,
                                                              epoch_length=epoch_length))
                  for s in cfg.param_scheduler]
    assert all(not s.by_epoch for s in schedulers)  # both step every iteration
    lrs = []
    for _ in range(total):
        lrs.append([g['lr'] for g in wrapper.optimizer.param_groups])
        for s in schedulers:
            s.step()
    lrs = torch.tensor(lrs, dtype=torch.float64)
    groups = wrapper.optimizer.param_groups  # one per setting: the backbone, the head
    head_params = {id(p) for p in model['decode_head'].parameters()}
    assert [{id(p) in head_params for p in g['params']} for g in groups] == [{False}, {True}]
    assert [len(g['params']) for g in groups] == [2, 2]
    is_head = [False, True]
    backbone, head = lrs[:, is_head.index(False)], lrs[:, is_head.index(True)]
    for i, head_group in enumerate(is_head):
        torch.testing.assert_close(lrs[:, i], head if head_group else backbone)
    torch.testing.assert_close(head, 10 * backbone)

    def cosine(i: int) -> float:
        return 1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi * i / total)) / 2

    assert backbone[0].item() == pytest.approx(1e-6, rel=1e-3)  # warmup starts at 1% of 1e-4
    assert bool((backbone[1:500] > backbone[:499]).all())  # rises through the warmup
    assert backbone[500].item() == pytest.approx(cosine(500), rel=1e-2)
    assert bool((backbone[501:] <= backbone[500:-1]).all())  # then only decays
    assert backbone[total // 2].item() == pytest.approx(cosine(total // 2), rel=1e-2)
    assert backbone[-1].item() == pytest.approx(1e-6, rel=1e-2)


# ----------------------------------------------------------------------- building and loss

def _tiny_batch(num_classes: int, size: int = 32, n: int = 2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size), generator=g))
        samples.append(s)
    return torch.randn(n, 3, size, size, generator=g), samples


@pytest.mark.slow
@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_builds_and_trains_one_step(name):
    model = build_segmentor(name)
    head = model.decode_head
    inputs, samples = _tiny_batch(head.num_classes)
    model.train()
    losses = model.loss(inputs, samples)
    assert set(k for k in losses if k.endswith('loss_ce')) == {'decode.loss_ce', 'aux.loss_ce'}
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    stem = model.backbone.stage0.rbr_conv[0].conv.weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0


@pytest.mark.parametrize('variant', VARIANTS)
def test_backbone_output_stride_8(variant):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = load(f'mobileone_{variant}_voc.py').model.backbone.copy()
    cfg.init_cfg = None
    backbone = MODELS.build(cfg).eval()
    with torch.no_grad():
        stage3, stage4 = backbone(torch.rand(1, 3, 64, 96))
    c3, c4 = stage_channels(variant, (3, 4))
    assert tuple(stage3.shape) == (1, c3, 8, 12)
    assert tuple(stage4.shape) == (1, c4, 8, 12)  # 1/8 of the input, not 1/32


@pytest.mark.parametrize('variant', ['s0', 's4'])  # four branches; squeeze-excite
def test_fused_segmentor_gives_the_same_logits(variant):
    model = calibrate_bn(build_segmentor(f'mobileone_{variant}_voc.py'), size=64)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)  # mode='tensor': the decode head's logits
        fused = mobileone_dense.reparameterize_model(model)
        actual = fused(x)
    assert fused.backbone.deployed and not model.backbone.deployed
    assert not any('rbr_' in n for n, _ in fused.named_parameters())
    assert expected.shape == (2, 21, 8, 8)
    assert_fused_close(actual, expected)


# ------------------------------------------------------------------------------ converter

def _converter():
    path = ROOT / 'tools' / 'dataset_converters' / 'coco_to_voc.py'
    spec = importlib.util.spec_from_file_location('coco_to_voc', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths, starting with zeros)."""
    flat = mask.flatten(order='F').astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return dict(size=list(mask.shape), counts=counts)


def _write_tiny_coco(root: Path) -> dict[str, np.ndarray]:
    """Three images: a scene with VOC classes, one with only a giraffe, one with a car in
    compressed RLE. Returns the masks the converter must write."""
    from pycocotools import mask as mask_utils
    conv = _converter()
    names = list(conv.VOC_FROM_COCO.values()) + ['giraffe']
    categories = [dict(id=100 + i, name=n) for i, n in enumerate(names)]  # ids unlike COCO's
    cat = {c['name']: c['id'] for c in categories}
    h, w = 20, 30

    def box(y0, y1, x0, x1):
        m = np.zeros((h, w), np.uint8)
        m[y0:y1, x0:x1] = 1
        return m

    person, dog, crowd = box(2, 16, 2, 14), box(6, 10, 6, 10), box(12, 20, 18, 30)
    car = box(5, 15, 10, 25)
    annotations = [
        # the dog is listed first but, smaller, is painted over the person
        dict(id=1, image_id=1, category_id=cat['dog'], segmentation=_rle(dog),
             area=int(dog.sum()), iscrowd=0),
        dict(id=2, image_id=1, category_id=cat['person'], area=int(person.sum()), iscrowd=0,
             segmentation=[[1.5, 1.5, 13.5, 1.5, 13.5, 15.5, 1.5, 15.5]]),  # = the person box
        dict(id=3, image_id=1, category_id=cat['giraffe'], segmentation=_rle(box(0, 4, 20, 28)),
             area=32, iscrowd=0),
        dict(id=4, image_id=1, category_id=cat['person'], segmentation=_rle(crowd),
             area=int(crowd.sum()), iscrowd=1),
        dict(id=5, image_id=2, category_id=cat['giraffe'], segmentation=_rle(box(0, 9, 0, 9)),
             area=81, iscrowd=0),
    ]
    rle = mask_utils.encode(np.asfortranarray(car))
    rle['counts'] = rle['counts'].decode()
    annotations.append(dict(id=6, image_id=3, category_id=cat['car'], segmentation=rle,
                            area=int(car.sum()), iscrowd=0))
    images = [dict(id=i, file_name=f'0000{i}.jpg', height=h, width=w) for i in (1, 2, 3)]
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'instances_train2017.json').write_text(json.dumps(
        dict(images=images, annotations=annotations, categories=categories)))

    voc = {name: idx for idx, name in conv.VOC_FROM_COCO.items()}
    scene = np.zeros((h, w), np.uint8)
    scene[crowd.astype(bool)] = 255
    scene[person.astype(bool)] = voc['person']
    scene[dog.astype(bool)] = voc['dog']
    return {'00001': scene, '00003': car * voc['car']}


def test_converter_writes_voc_masks(tmp_path, capsys):
    expected = _write_tiny_coco(tmp_path / 'coco')
    assert _converter().main([str(tmp_path / 'coco'), '--split', 'train2017']) == 0
    out = tmp_path / 'coco' / 'voc_masks'
    assert (out / 'train2017.txt').read_text().split() == ['00001', '00003']  # 00002 skipped
    assert sorted(p.name for p in (out / 'train2017').iterdir()) == ['00001.png', '00003.png']
    for stem, mask in expected.items():
        written = Image.open(out / 'train2017' / f'{stem}.png')
        assert written.mode == 'L'
        np.testing.assert_array_equal(np.asarray(written), mask)
    printed = capsys.readouterr().out
    assert '2 of 3 images show a VOC class' in printed and 'wrote 2 masks' in printed


@pytest.mark.slow
def test_converter_output_matches_a_hand_drawn_answer(tmp_path):
    """One 4 x 6 image drawn by hand, converted by the command line with two workers: a cat
    square (a polygon) listed before, and painted over, the larger couch; a person crowd that is
    ignored where nothing covers it; a giraffe that is background."""
    conv = _converter()
    cat = {name: 100 + i for i, name in enumerate([*conv.VOC_FROM_COCO.values(), 'giraffe'])}
    box = np.zeros((4, 6), np.uint8)
    couch, crowd, giraffe = box.copy(), box.copy(), box.copy()
    couch[0:4, 0:4] = crowd[2:4, 2:6] = giraffe[0:2, 3:6] = 1

    def ann(i, name, segmentation, area, iscrowd=0):
        return dict(id=i, image_id=7, category_id=cat[name], segmentation=segmentation,
                    area=area, iscrowd=iscrowd)

    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'instances_val2017.json').write_text(json.dumps(dict(
        images=[dict(id=7, file_name='sofa.jpg', height=4, width=6)],
        categories=[dict(id=i, name=n) for n, i in cat.items()],
        annotations=[
            ann(1, 'cat', [[0.5, 0.5, 2.5, 0.5, 2.5, 2.5, 0.5, 2.5]], 4),  # pixels 1..2
            ann(2, 'couch', _rle(couch), 16),
            ann(3, 'person', _rle(crowd), 8, iscrowd=1),
            ann(4, 'giraffe', _rle(giraffe), 6)])))
    script = ROOT / 'tools' / 'dataset_converters' / 'coco_to_voc.py'
    run = subprocess.run([sys.executable, str(script), str(root), '--split', 'val2017',
                          '--nproc', '2'], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = root / 'voc_masks'
    assert (out / 'val2017.txt').read_text() == 'sofa\n'
    np.testing.assert_array_equal(np.asarray(Image.open(out / 'val2017' / 'sofa.png')), [
        [18, 18, 18, 18, 0, 0],
        [18, 8, 8, 18, 0, 0],
        [18, 8, 8, 18, 255, 255],
        [18, 18, 18, 18, 255, 255]])


def test_converted_masks_load_as_a_voc_dataset(tmp_path):
    """The layout the _voc_coco configs expect is what mmseg's PascalVOCDataset reads."""
    from mmseg.datasets import PascalVOCDataset
    _write_tiny_coco(tmp_path / 'coco')
    _converter().main([str(tmp_path / 'coco')])
    images = tmp_path / 'coco' / 'train2017'
    images.mkdir()
    for stem in ('00001', '00002', '00003'):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / f'{stem}.jpg')
    part = load('mobileone_s0_voc_coco.py').train_dataloader.dataset.datasets[2]
    dataset = PascalVOCDataset(data_root=str(tmp_path / 'coco'), data_prefix=part.data_prefix,
                               ann_file=part.ann_file, pipeline=[])
    assert [Path(d['seg_map_path']).name for d in dataset] == ['00001.png', '00003.png']


def test_converter_names_a_missing_annotation_file(tmp_path):
    (tmp_path / 'coco').mkdir()
    conv = _converter()
    with pytest.raises(conv.ConversionError) as e:
        conv.main([str(tmp_path / 'coco'), '--split', 'val2017'])
    message = str(e.value)
    assert 'instances_val2017.json not found' in message and 'pass the COCO root' in message
    assert message.endswith('.') and '\n' not in message  # one sentence
    with pytest.raises(conv.ConversionError, match='COCO folder .* not found'):
        conv.main([str(tmp_path / 'nowhere')])
    assert conv.cli.run_tool(conv.main, [str(tmp_path / 'nowhere')]) == 1  # one line, exit 1


def test_converter_rejects_a_file_without_voc_categories(tmp_path):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'instances_train2017.json').write_text(json.dumps(
        dict(images=[], annotations=[], categories=[dict(id=1, name='giraffe')])))
    conv = _converter()
    with pytest.raises(conv.ConversionError, match="no COCO categories named .*'airplane'"):
        conv.main([str(root)])
