# DeepLabV3-MobileOne on ADE20k (SceneParsing), 150 classes (label 0 "other" is ignored through
# reduce_zero_label), 512x512 crops, evaluated on the 2000 validation images. mmseg's ADE20k
# base supplies the folders and the test pipeline; the training augmentations are only those of
# the paper (random resize, random crop, horizontal flip).
#
# data/ade/ADEChallengeData2016/
#   images/{training,validation}/*.jpg   annotations/{training,validation}/*.png
_base_ = ['./deeplabv3_mobileone.py', 'mmseg::_base_/datasets/ade20k.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),  # pads each batch to the crop (labels with 255)
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=True),  # epoch-based loop
    dataset=dict(pipeline=train_pipeline))
