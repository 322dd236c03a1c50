_base_ = '../_base_/deeplabv3_mobileone_voc.py'
