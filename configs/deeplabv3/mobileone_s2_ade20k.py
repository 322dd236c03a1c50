_base_ = '../_base_/deeplabv3_mobileone_ade20k.py'
model = dict(
    backbone=dict(arch='s2', init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/'
                  'ml-research/datasets/mobileone/mobileone_s2_unfused.pth.tar')),
    decode_head=dict(in_channels=2048),  # stage_channels('s2', (3, 4))
    auxiliary_head=dict(in_channels=640))
