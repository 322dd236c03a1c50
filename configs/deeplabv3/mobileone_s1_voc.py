_base_ = '../_base_/deeplabv3_mobileone_voc.py'
model = dict(
    backbone=dict(arch='s1', init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/'
                  'ml-research/datasets/mobileone/mobileone_s1_unfused.pth.tar')),
    decode_head=dict(in_channels=1280),  # stage_channels('s1', (3, 4))
    auxiliary_head=dict(in_channels=512))
