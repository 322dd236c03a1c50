# SSDLite with a MobileOne backbone on COCO at 320x320: the paper's recipe (supplementary E).
# mmdet's SSDLite-MobileNetV2 config supplies the SSD neck and head (depthwise-separable convs,
# six levels), the anchors and the 320x320 pipelines; we change the backbone and the schedule.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
custom_imports = dict(imports=['mobileone_dense'], allow_failed_imports=False)

# Apple's ImageNet train-time (unfused) weights; override with a local file through
# --cfg-options model.backbone.init_cfg.checkpoint=PATH, or init_cfg=None for scratch.
apple_url = 'https://docs-assets.developer.apple.com/ml-research/datasets/mobileone/'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileOne',
        arch='s0',
        out_indices=(3, 4),  # stride 16 and 32
        init_cfg=dict(type='Pretrained',
                      checkpoint=apple_url + 'mobileone_s0_unfused.pth.tar')),
    neck=dict(in_channels=(256, 1024), out_channels=(256, 1024, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(256, 1024, 512, 256, 256, 128), num_classes=80))

# The paper trains 200 epochs over COCO itself (mmdet's MobileNetV2 config repeats it 5x).
train_dataloader = dict(
    batch_size=24,
    dataset=dict(_delete_=True,
                 type='CocoDataset',
                 data_root='data/coco/',
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline={{_base_.train_pipeline}}))

max_epochs = 200
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=4500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True,
         eta_min=0),
]
# 24 images per GPU on 8 GPUs; --auto-scale-lr scales lr 0.05 to the batch you train with.
auto_scale_lr = dict(enable=False, base_batch_size=192)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3,
                                     save_best='auto'))
