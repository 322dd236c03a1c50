# DeepLabV3-MobileOne on Pascal VOC 2012 + SBD + the COCO train2017 images that show VOC classes
# (the paper trains "on both MS-COCO and VOC data simultaneously", as MobileViT does), still
# evaluated on VOC2012 val. The COCO masks come from
#   python tools/dataset_converters/coco_to_voc.py data/coco
# which writes the VOC-class masks and the list of kept images under data/coco/voc_masks/:
#
# data/coco/
#   train2017/*.jpg   annotations/instances_train2017.json
#   voc_masks/train2017/*.png   voc_masks/train2017.txt     (written by the converter)
_base_ = ['./deeplabv3_mobileone_voc.py']

coco_voc = dict(
    type='PascalVOCDataset',  # same 21 classes and palette as VOC
    data_root='data/coco',
    data_prefix=dict(img_path='train2017', seg_map_path='voc_masks/train2017'),
    ann_file='voc_masks/train2017.txt',
    pipeline={{_base_.train_pipeline}})
train_dataloader = dict(
    dataset=dict(datasets=[{{_base_.voc_train}}, {{_base_.voc_aug}}, coco_voc]))
