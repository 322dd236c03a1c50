_base_ = '../_base_/deeplabv3_mobileone_ade20k.py'
