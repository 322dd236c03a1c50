"""The benchmarks' one model builder: each MobileOne variant and its MobileNetV2 peer as a bare
backbone, an SSDLite detector or a DeepLabV3 segmentor.

:func:`group_config` gives the config of a detector or segmentor (the repository's MobileOne
configs; mmdet's SSDLite-MobileNetV2 and mmseg's DeepLabV3-MobileNetV2-D8 as their packages
ship them, the segmentors all with VOC's 21 classes). :func:`build` makes what the latency
benchmark times: the network a deployment runs (a raw ``1x3xHxW`` 0..255 image in, the
configs' normalisation inside; a detector up to decoded boxes and scores, a segmentor to
logits and class map, a backbone to its stride-32 map) in two forms, train-time and deployed.
Deployed is the same for every model, MobileOne or not: MobileOne blocks reparameterized *and*
every remaining conv + BN pair folded (:func:`~mobileone_dense.models.reparameterize_model`
with ``fold_bn=True``). Weights are seeded random, with every BN's statistics measured on a
few synthetic images first: with a fresh BN's (mean 0, variance 1) activations grow by orders
of magnitude over the blocks, and INT8 calibration cannot cover them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import apis
from ..export.graph import Normalize
from ..export.numerics import make_image
from ..models import MobileOne, reparameterize_model
from ..tasks import task_of

#: The groups of models and the input side each is timed at.
SIZES = {'backbone': 224, 'ssdlite': 320, 'deeplabv3': 512}
#: The task of each group of whole models.
TASKS = {'ssdlite': 'detection', 'deeplabv3': 'segmentation'}
PEER = 'MobileNetV2'
PEER_CONFIGS = {
    'ssdlite': 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
    'deeplabv3': 'mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py',
}
#: The segmentors' classes: VOC's, as ``configs/deeplabv3/mobileone_*_voc.py``; the peer (an
#: ADE20k config) is set to match.
SEG_CLASSES = 21
#: The configs' ImageNet normalisation (mean, std), for the bare backbones.
IMAGENET = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])


def group_config(group: str, name: str, options: Optional[dict] = None):
    """The config of MobileOne-``name`` (``s0``..``s4``) or of the peer (:data:`PEER`) in a
    group of whole models."""
    options = dict(options or {})
    if TASKS[group] == 'segmentation':
        options.update({'model.decode_head.num_classes': SEG_CLASSES,
                        'model.auxiliary_head.num_classes': SEG_CLASSES})
    if name == PEER:
        return apis.load_config(PEER_CONFIGS[group], options)
    return apis.load_config(apis.config_path(TASKS[group], name), options)


class BackboneNetwork(nn.Module):
    """A bare backbone as the runtimes run it: the configs' normalisation, then its last map.
    Both sit in ``core``, the part INT8 quantizes (as in the task networks): without a float op
    in front, the converter would make the graph's input itself int8."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        from mmdet.models.data_preprocessors import DetDataPreprocessor
        mean, std = IMAGENET
        normalize = Normalize(DetDataPreprocessor(mean=mean, std=std, bgr_to_rgb=True))
        self.core = nn.Sequential(normalize, backbone)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.core(image))  # mmdet backbones give a tuple of maps


def measure_bn(module: nn.Module, images: Tensor) -> None:
    """Replace the running statistics of every BN in ``module`` by those of ``images`` (one
    batch), then switch it to eval mode."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # the plain average of the batch's statistics
    module.train()
    with torch.no_grad():
        module(images)
    module.eval()


@dataclass
class Model:
    """One model of a group in its two forms, with what its timing needs.

    ``postprocess``: a detector's selection and NMS (network outputs -> detections), else None;
    ``cfg``: a whole model's config (MediaPipe's options come from its test settings).
    """
    group: str
    name: str
    train: nn.Module
    network: nn.Module
    postprocess: Optional[Callable] = None
    cfg: Optional[object] = None
    size: int = field(init=False)
    image: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.size = SIZES[self.group]
        self.image = make_image((self.size, self.size))

    @property
    def peer(self) -> bool:
        return self.name == PEER

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    @property
    def key(self) -> str:
        """The model's name in the conversion cache."""
        return f'{self.group}_{self.name.lower()}_{self.size}'

    def app_network(self) -> nn.Module:
        """The deployed network's ``app=True`` form, what ``tools/export.py`` puts in the LiteRT
        files MediaPipe Tasks run (RGB in, the outputs their metadata declare)."""
        return task_of(self.cfg).network(self.network.core.model, (self.size, self.size), True)


def build(group: str, name: str) -> Model:
    """MobileOne-``name`` or the peer in ``group``, train-time and deployed (see the module
    doc)."""
    size = SIZES[group]
    torch.manual_seed(0)  # the same weights in every run: the conversion cache relies on it
    if group == 'backbone':
        backbone = MobileOne(name, out_indices=(4, )) if name != PEER else None
        if backbone is None:
            from mmdet.models.backbones import MobileNetV2
            backbone = MobileNetV2(out_indices=(7, ))
        train, task, cfg = BackboneNetwork(backbone), None, None
    else:
        cfg = group_config(group, name)
        task = task_of(cfg)
        train = task.network(apis.build_model(cfg), (size, size))
    images = torch.cat([make_image((size, size), seed) for seed in range(100, 104)])
    measure_bn(train.core, images)
    train.eval()  # not chained: mmdet's MobileNetV2.train() returns None
    network = reparameterize_model(train, fold_bn=True)
    post = None
    if task is not None and task.name == 'detection':
        post = task.postprocessor(network.core.model, (size, size))
    return Model(group, name.upper() if name != PEER else PEER, train, network, post, cfg)
