"""Missing segmentation data gets one sentence naming the expected layout."""
from pathlib import Path

import pytest
from mmengine.config import Config

from mobileone_dense.datasets import DatasetNotFoundError, check_datasets

CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / 'deeplabv3'
VOC = 'data/VOCdevkit/VOC2012'


def _cfg(name: str) -> Config:
    return Config.fromfile(CONFIGS / name)


def check_segmentation_data(cfg, splits=('train', 'val', 'test'), root='.'):
    check_datasets(cfg, [f'{split}_dataloader' for split in splits], root=root)


def _make_voc(root: Path) -> None:
    voc = root / VOC
    for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                'ImageSets/Segmentation'):
        (voc / sub).mkdir(parents=True)
    for split in ('train', 'aug', 'val'):
        (voc / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text('2007_000032\n')


def _message(excinfo) -> str:
    message = str(excinfo.value)
    assert '\n' not in message and message.endswith('.'), message
    return message


def test_missing_voc_names_the_vocaug_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        check_segmentation_data(_cfg('mobileone_s0_voc.py'), root=tmp_path)
    message = _message(e)
    assert message.startswith(f'PascalVOCDataset folder {VOC} (read by train_dataloader.dataset')
    assert 'does not exist: download VOCtrainval_11-May-2012.tar' in message
    for part in ('JPEGImages', 'SegmentationClassAug', 'voc_aug.py',
                 'ImageSets/Segmentation/{train,aug,val}.txt'):
        assert part in message


def test_complete_voc_passes_and_a_missing_list_is_named(tmp_path):
    _make_voc(tmp_path)
    check_segmentation_data(_cfg('mobileone_s1_voc.py'), root=tmp_path)
    (tmp_path / VOC / 'ImageSets' / 'Segmentation' / 'aug.txt').unlink()
    with pytest.raises(DatasetNotFoundError,
                       match=r'ImageSets/Segmentation/aug.txt \(read by .*\) does not exist'):
        check_segmentation_data(_cfg('mobileone_s1_voc.py'), root=tmp_path)
    # testing reads only VOC2012 val
    check_segmentation_data(_cfg('mobileone_s1_voc.py'), splits=('test', ), root=tmp_path)


def test_missing_coco_masks_name_the_converter(tmp_path):
    _make_voc(tmp_path)
    (tmp_path / 'data' / 'coco' / 'train2017').mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as e:
        check_segmentation_data(_cfg('mobileone_s0_voc_coco.py'), root=tmp_path)
    message = _message(e)
    assert 'data/coco/voc_masks/train2017 (read by ' in message
    assert 'python tools/dataset_converters/coco_to_voc.py data/coco' in message


def test_missing_ade20k_names_its_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        check_segmentation_data(_cfg('mobileone_s0_ade20k.py'), root=tmp_path)
    message = _message(e)
    assert message.startswith('ADE20KDataset folder data/ade/ADEChallengeData2016 (read by ')
    assert 'annotations/{training,validation}/*.png' in message


def test_demo_config_states_its_own_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        check_segmentation_data(_cfg('mobileone_mu0_demo.py'), root=tmp_path)
    assert 'python tools/make_demo_data.py' in _message(e)
