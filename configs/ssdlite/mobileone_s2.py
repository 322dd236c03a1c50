_base_ = '../_base_/ssdlite_mobileone_coco.py'
channels = (640, 2048)  # stage_channels('s2', (3, 4))
model = dict(
    backbone=dict(arch='s2', init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/'
                  'ml-research/datasets/mobileone/mobileone_s2_unfused.pth.tar')),
    neck=dict(in_channels=channels, out_channels=channels + (512, 256, 256, 128)),
    bbox_head=dict(in_channels=channels + (512, 256, 256, 128)))
