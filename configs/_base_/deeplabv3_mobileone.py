# DeepLabV3 with a MobileOne backbone: the model and the paper's schedule (MobileViT recipe,
# SPEC section 2). The dataset bases (deeplabv3_mobileone_{voc,voc_coco,ade20k}.py) add data.
# mmseg's DeepLabV3 base supplies the ASPP head (512 channels, rates 1/12/24/36, dropout 0.1),
# the auxiliary FCN head (loss weight 0.4), SyncBN and the ImageNet normalization that Apple's
# checkpoints were trained with; we swap the backbone and the schedule.
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py', 'mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mobileone_dense'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,  # mmseg's base points at an open-mmlab:// ResNet; MobileOne has init_cfg
    backbone=dict(
        _delete_=True,
        type='MobileOne',
        arch='s0',
        out_indices=(3, 4),  # stage3 for the auxiliary head, stage4 for ASPP
        # Output stride 8: stage3 and stage4 keep stride 1 and dilate by 2 and 4.
        strides=(2, 2, 2, 1, 1),
        dilations=(1, 1, 1, 2, 4),
        norm_cfg=norm_cfg,
        # Apple's ImageNet train-time (unfused) weights; --cfg-options
        # model.backbone.init_cfg.checkpoint=PATH for a local file, init_cfg=None for scratch.
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://docs-assets.developer.apple.com/ml-research/'
                      'datasets/mobileone/mobileone_s0_unfused.pth.tar')),
    # in_index counts the backbone outputs: 0 is stage3, 1 is stage4.
    decode_head=dict(in_channels=1024, in_index=1),  # stage_channels('s0', (3, 4))
    auxiliary_head=dict(in_channels=256, in_index=0))

# Schedule: 50 epochs of AdamW (wd 0.01), lr 1e-4 with a 10x multiplier on both heads,
# 500 linear warmup iterations, cosine decay to 1e-6 (1% of each group's lr, so the heads end
# at 1e-5 as in the MobileViT recipe, which scales the whole schedule by the multiplier).
max_epochs = 50
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The optimizer updates one group per distinct setting (the backbone, the heads) instead of one
# per tensor: the same steps, bit for bit (mobileone_dense/engine/optim_constructor.py).
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'decode_head': dict(lr_mult=10.0),
        'auxiliary_head': dict(lr_mult=10.0)
    }))
# The two schedulers overlap as in the recipe: the cosine runs over all 50 epochs and the
# warmup ramps the first 500 iterations up to it.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=True, begin=0, end=max_epochs,
         T_max=max_epochs, convert_to_iter_based=True),
]
# An EMA of the weights (momentum 5e-4, buffers included); validation, test and the saved
# checkpoints use the EMA weights (mmengine's EMAHook swaps them in).
custom_hooks = [
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=5e-4,
         update_buffers=True, priority=49)
]
# 8 images per GPU on 8 GPUs; --auto-scale-lr scales the lr to the batch you train with.
auto_scale_lr = dict(enable=False, base_batch_size=64)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=5, max_keep_ckpts=3,
                    save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=True)
