_base_ = '../_base_/deeplabv3_mobileone_voc_coco.py'
model = dict(
    backbone=dict(arch='s3', init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/'
                  'ml-research/datasets/mobileone/mobileone_s3_unfused.pth.tar')),
    decode_head=dict(in_channels=2048),  # stage_channels('s3', (3, 4))
    auxiliary_head=dict(in_channels=768))
