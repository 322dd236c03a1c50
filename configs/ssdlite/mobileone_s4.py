_base_ = '../_base_/ssdlite_mobileone_coco.py'
channels = (896, 2048)  # stage_channels('s4', (3, 4))
model = dict(
    backbone=dict(arch='s4', init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/'
                  'ml-research/datasets/mobileone/mobileone_s4_unfused.pth.tar')),
    neck=dict(in_channels=channels, out_channels=channels + (512, 256, 256, 128)),
    bbox_head=dict(in_channels=channels + (512, 256, 256, 128)))
