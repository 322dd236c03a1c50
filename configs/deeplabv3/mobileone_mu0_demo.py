# DeepLabV3-MobileOne-mu0 on the synthetic scenes of tools/make_demo_data.py (`make demo`),
# trained from scratch (nothing is downloaded) on 2 CPU cores in two processes, bfloat16 where the
# CPU has it. The schedule was tuned on the val split; the demo reports the held-out test split.
# The model is the paper's DeepLabV3 (backbone at output stride 8, ASPP on stage4, auxiliary FCN
# on stage3) on the smallest variant, mu0: per minute of CPU it learns faster than S0, whose four
# train-time branches and dilated 1/8-resolution stage3 cost more per iteration.
# What else differs from the paper configs, all to fit an 8-minute budget: 128x128 crops holding
# at least a quarter of foreground (cat_max_ratio), a 64-channel ASPP with rates scaled to the
# 16x16 feature map, plain BN (SyncBN needs a GPU), AdamW at a from-scratch lr for the whole model
# (the recipe's 10x head multiplier serves a pretrained backbone), an 8-epoch cosine schedule
# (shorter ones sometimes merged stars into triangles), an EMA momentum sized to a few hundred
# iterations, and a loss that also weighs every class alike (pixel cross-entropy plus
# ClassBalancedCrossEntropyLoss): with pixel cross-entropy alone a small class can settle as a
# larger look-alike, which costs a pixel-averaged loss little (docs/training.md).
#
# data/demo/ (python tools/make_demo_data.py):
#   images/{train,val,test}/*.jpg   masks/{train,val,test}/*.png (0 background, 1..5 shapes)
#   splits/{train,val,test}.txt
_base_ = '../_base_/deeplabv3_mobileone.py'
data_layout = ('DATA_ROOT/images/{train,val,test}/*.jpg, DATA_ROOT/masks/{train,val,test}/*.png '
               'and DATA_ROOT/splits/{train,val,test}.txt, written by '
               '"python tools/make_demo_data.py"')

size = 256  # the demo scenes' side
crop = 128
classes = ('background', 'ellipse', 'rectangle', 'triangle', 'star', 'cross')
palette = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
           [245, 130, 48]]
norm_cfg = dict(type='BN', requires_grad=True)
channels = (128, 384)  # stage_channels('mu0', (3, 4))
model = dict(
    data_preprocessor=dict(size=(crop, crop)),
    backbone=dict(arch='mu0', norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=channels[1], channels=64, dilations=(1, 3, 6, 9),
                     num_classes=len(classes), norm_cfg=norm_cfg,
                     loss_decode=[
                         dict(type='CrossEntropyLoss', loss_weight=1.0, loss_name='loss_ce'),
                         dict(type='ClassBalancedCrossEntropyLoss', loss_weight=1.0,
                              loss_name='loss_balanced')]),
    auxiliary_head=dict(in_channels=channels[0], channels=32, num_classes=len(classes),
                        norm_cfg=norm_cfg,
                        loss_decode=[
                            dict(type='CrossEntropyLoss', loss_weight=0.4,
                                 loss_name='loss_ce'),
                            dict(type='ClassBalancedCrossEntropyLoss', loss_weight=0.4,
                                 loss_name='loss_balanced')]))

demo = dict(type='BaseSegDataset', data_root='data/demo', img_suffix='.jpg',
            seg_map_suffix='.png', reduce_zero_label=False,
            metainfo=dict(classes=classes, palette=palette))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(size, size), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(crop, crop), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(size, size), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(**demo, ann_file='splits/train.txt', pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/train', seg_map_path='masks/train')))
val_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**demo, ann_file='splits/val.txt', pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/val', seg_map_path='masks/val')))
test_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**demo, ann_file='splits/test.txt', pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/test', seg_map_path='masks/test')))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)  # tools/test.py evaluates
optim_wrapper = dict(optimizer=dict(lr=3e-3),
                     paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=1.0),
                                                     'auxiliary_head': dict(lr_mult=1.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=True, begin=0, end=max_epochs,
         T_max=max_epochs, convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.01,
         update_buffers=True, priority=49)
]
# A checkpoint every 2 epochs: an interrupted demo resumes (tools/train.py --resume).
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=2, save_best=None, max_keep_ckpts=1))
