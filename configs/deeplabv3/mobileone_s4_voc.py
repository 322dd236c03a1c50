# Apple's S4 checkpoint has squeeze-excite (the paper's segmentation S4 was trained
# without it, from weights that were not released); we keep SE so the weights load.
_base_ = '../_base_/deeplabv3_mobileone_voc.py'
model = dict(
    backbone=dict(arch='s4', init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/'
                  'ml-research/datasets/mobileone/mobileone_s4_unfused.pth.tar')),
    decode_head=dict(in_channels=2048),  # stage_channels('s4', (3, 4))
    auxiliary_head=dict(in_channels=896))
