"""tools/train.py, test.py and image_demo.py on a tiny demo dataset, and the one-sentence
errors of missing data, files and unreachable weights."""
import json

import pytest
from helpers import (
    ROOT,
    call_tool,
    error_line,
    make_demo_data,
    run_tool,
    save_checkpoint,
    write_tiny_config,
)
from mmengine.config import Config
from mmengine.fileio import load

from mobileone_dense.apis import build_model, load_config
from mobileone_dense.datasets import DatasetNotFoundError, check_datasets

TRAIN, TEST = (ROOT / 'tools' / f for f in ('train.py', 'test.py'))


@pytest.fixture(scope='module')
def untrained(tmp_path_factory):
    """Demo data (64x64), a tiny config and a checkpoint of its untrained model, for the error
    paths that fail before any prediction."""
    root = tmp_path_factory.mktemp('untrained')
    data = make_demo_data(root / 'demo')
    config = write_tiny_config(root / 'tiny.py', data)
    cfg = load_config(config)
    checkpoint = save_checkpoint(build_model(cfg), root / 'untrained.pth',
                                 cfg.test_dataloader.dataset.metainfo['classes'])
    return dict(root=root, data=data, config=config, checkpoint=checkpoint)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Demo data (64x64), a 4-iteration config and the checkpoint it trains."""
    root = tmp_path_factory.mktemp('tiny')
    data = make_demo_data(root / 'demo')
    config = write_tiny_config(root / 'tiny.py', data, iters=4, interval=4)
    result = run_tool(TRAIN, config, '--work-dir', root / 'work')
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(root=root, data=data, config=config, work=root / 'work',
                checkpoint=root / 'work' / 'iter_4.pth', train_log=result.stdout + result.stderr)


@pytest.mark.slow
def test_training_shows_progress(tiny):
    log = tiny['train_log']
    assert 'Iter(train) [4/4]' in log and 'eta:' in log and 'loss:' in log
    assert tiny['checkpoint'].is_file()


def _coco_map(ann_file, predictions) -> float:
    """Box mAP@[0.5:0.95] of dumped predictions (labels 0..4 are categories 1..5)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(str(ann_file))
    results = []
    for pred in predictions:
        inst = pred['pred_instances']
        for (x1, y1, x2, y2), score, label in zip(inst['bboxes'].tolist(),
                                                  inst['scores'].tolist(),
                                                  inst['labels'].tolist()):
            results.append(dict(image_id=pred['img_id'], category_id=label + 1, score=score,
                                bbox=[x1, y1, x2 - x1, y2 - y1]))
    assert results, 'the tiny model should predict boxes at score threshold 0'
    evaluator = COCOeval(gt, gt.loadRes(results), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return max(float(evaluator.stats[0]), 0.0)


@pytest.mark.slow
def test_test_tool_prints_coco_map_and_writes_metrics(tiny, tmp_path):
    result = run_tool(TEST, tiny['config'], tiny['checkpoint'], '--work-dir', tmp_path,
                      '--out', tmp_path / 'preds.pkl', '--show-dir', tmp_path / 'shown')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in out  # pycocotools table
    metrics = json.loads((tmp_path / 'test_metrics.json').read_text())['metrics']
    # The printed mAP is pycocotools' own on the predictions the tool dumped: evaluate them
    # here, independently of mmdet's CocoMetric.
    assert metrics['coco/bbox_mAP'] == pytest.approx(_coco_map(
        tiny['data'] / 'annotations' / 'instances_val.json', load(tmp_path / 'preds.pkl')),
        abs=5e-4)  # CocoMetric rounds to 3 decimals
    assert len(list((tmp_path / 'shown').glob('*.jpg'))) == 4


@pytest.mark.slow
def test_image_demo_draws_pngs(tiny, tmp_path, capsys):
    status, _ = call_tool('image_demo', tiny['data'] / 'images' / 'val', tiny['config'],
                          tiny['checkpoint'], '--out-dir', tmp_path, '--score-thr', '0.01',
                          capsys=capsys)
    assert status == 0
    pngs = sorted(tmp_path.glob('*.png'))
    assert [p.stem for p in pngs] == [f'{i:06d}' for i in range(4)]


def test_image_demo_bad_images(untrained, tmp_path, capsys):
    missing = call_tool('image_demo', tmp_path / 'nope.jpg', untrained['config'],
                        untrained['checkpoint'], capsys=capsys)
    assert 'nope.jpg does not exist' in error_line(*missing)
    (tmp_path / 'broken.jpg').write_text('not an image')
    broken = call_tool('image_demo', tmp_path / 'broken.jpg', untrained['config'],
                       untrained['checkpoint'], capsys=capsys)
    assert 'broken.jpg is not a readable image' in error_line(*broken)
    (tmp_path / 'empty').mkdir()
    empty = call_tool('image_demo', tmp_path / 'empty', untrained['config'],
                      untrained['checkpoint'],
                      capsys=capsys)
    assert 'empty holds no images' in error_line(*empty)


def test_train_without_coco_says_where_and_how(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = error_line(*call_tool('train', ROOT / 'configs/ssdlite/mobileone_s0.py',
                                 capsys=capsys))
    assert 'CocoDataset folder data/coco (read by train_dataloader.dataset)' in line
    assert 'https://cocodataset.org' in line
    # with the folder there, the first missing file is named
    (tmp_path / 'data/coco/train2017').mkdir(parents=True)
    line = error_line(*call_tool('train', ROOT / 'configs/ssdlite/mobileone_s0.py',
                                 capsys=capsys))
    assert 'CocoDataset file data/coco/annotations/instances_train2017.json' in line


def test_test_without_checkpoint_or_coco(tmp_path, untrained, monkeypatch, capsys):
    config = ROOT / 'configs/ssdlite/mobileone_s0.py'
    line = error_line(*call_tool('test', config, tmp_path / 'none.pth', capsys=capsys))
    assert 'none.pth does not exist' in line
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'data/coco/val2017').mkdir(parents=True)
    line = error_line(*call_tool('test', config, untrained['checkpoint'], capsys=capsys))
    assert 'data/coco/annotations/instances_val2017.json (read by test_dataloader' in line


def test_missing_config_is_one_sentence(tmp_path, capsys):
    line = error_line(*call_tool('train', tmp_path / 'nope.py', capsys=capsys))
    assert 'nope.py does not exist' in line


def test_unreachable_pretrained_url_is_one_sentence(untrained, tmp_path, capsys):
    config = tmp_path / 'pretrained.py'
    config.write_text(untrained['config'].read_text() + (
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
        "checkpoint='http://127.0.0.1:9/mobileone_s0_unfused.pth.tar')))\n"))
    line = error_line(*call_tool('train', config, '--work-dir', tmp_path / 'work',
                                 capsys=capsys))
    assert 'Could not download the pretrained checkpoint http://127.0.0.1:9/' in line
    assert 'model.backbone.init_cfg' in line


def test_check_datasets_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(ROOT / 'configs/ssdlite/mobileone_s0.py'))
    with pytest.raises(DatasetNotFoundError, match=(
            r'^CocoDataset folder data/coco \(read by '
            r'train_dataloader\.dataset\) does not exist: download .*cocodataset\.org.* or '
            r'point train_dataloader\.dataset\.data_root at your copy')):
        check_datasets(cfg, ['train_dataloader'])
    demo = Config.fromfile(str(ROOT / 'configs/ssdlite/mobileone_mu0_demo.py'))
    with pytest.raises(DatasetNotFoundError, match=r'tools/make_demo_data\.py'):
        check_datasets(demo, ['test_dataloader'])


def test_check_datasets_walks_wrappers(tmp_path):
    (tmp_path / 'a' / 'imgs').mkdir(parents=True)
    (tmp_path / 'a' / 'train.txt').write_text('x\n')
    good = dict(type='BaseSegDataset', data_root=str(tmp_path / 'a'), ann_file='train.txt',
                data_prefix=dict(img_path='imgs', seg_map_path=''))
    bad = dict(good, data_prefix=dict(img_path='imgs', seg_map_path='masks'))
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(type='ConcatDataset', datasets=[good, bad]))))
    with pytest.raises(DatasetNotFoundError,
                       match=r'BaseSegDataset folder .*a/masks \(read by train_dataloader\.'
                             r'dataset\.dataset\.datasets\[1\]\) does not exist'):
        check_datasets(cfg, ['train_dataloader', 'val_dataloader'])
    cfg['train_dataloader']['dataset']['dataset']['datasets'] = [good]
    check_datasets(cfg, ['train_dataloader', 'val_dataloader'])
