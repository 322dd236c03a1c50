# DeepLabV3-MobileOne on Pascal VOC 2012 + SBD (mmseg's VOCaug layout), 21 classes, evaluated
# on VOC2012 val. mmseg's VOC base supplies the folders and the test pipeline; the training
# augmentations are only those of the paper (random resize, random crop, horizontal flip).
#
# data/VOCdevkit/VOC2012/
#   JPEGImages/*.jpg                    SegmentationClass/*.png   (VOC2012 masks)
#   SegmentationClassAug/*.png          (SBD masks, mmseg's tools/dataset_converters/voc_aug.py)
#   ImageSets/Segmentation/{train,val,aug}.txt
_base_ = ['./deeplabv3_mobileone.py', 'mmseg::_base_/datasets/pascal_voc12_aug.py']

data_root = 'data/VOCdevkit/VOC2012'
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),  # pads each batch to the crop (labels with 255)
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
voc_train = dict(
    type='PascalVOCDataset',
    data_root=data_root,
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
    ann_file='ImageSets/Segmentation/train.txt',
    pipeline=train_pipeline)
voc_aug = dict(
    type='PascalVOCDataset',
    data_root=data_root,
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
    ann_file='ImageSets/Segmentation/aug.txt',
    pipeline=train_pipeline)
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=True),  # epoch-based loop
    dataset=dict(type='ConcatDataset', datasets=[voc_train, voc_aug]))
