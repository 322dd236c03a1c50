_base_ = '../_base_/ssdlite_mobileone_coco.py'
arch, channels = 's3', (768, 2048)  # stage_channels('s3', (3, 4))
model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint={{_base_.apple_url}} +
                                           f'mobileone_{arch}_unfused.pth.tar')),
    neck=dict(in_channels=channels, out_channels=channels + (512, 256, 256, 128)),
    bbox_head=dict(in_channels=channels + (512, 256, 256, 128)))
