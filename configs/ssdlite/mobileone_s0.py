_base_ = '../_base_/ssdlite_mobileone_coco.py'
# MobileOne-S0: stage3 and stage4 give 256 and 1024 channels.
