"""The deploy benchmark's models: each backbone, detector and segmentor fused, with seeded random
weights and measured BN statistics, as the network every runtime runs.

A bare backbone gets the configs' ImageNet normalisation in front of it
(:class:`BackboneNetwork`); a detector or segmentor is its task's network
(:meth:`~mobileone_dense.tasks.Task.network`), a detector with its post-processing. Weights are
seeded, so that a rerun builds the models the converted files in the cache hold
(:mod:`.deploy_convert`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import apis
from ..export.fusion import fuse
from ..export.graph import Normalize
from ..export.numerics import make_image
from ..models import MobileOne
from ..tasks import task_of
from .common import SEG_OPTIONS, measure_bn, num_params
from .plot import DEPLOY_RUNTIMES

PEER = apis.PEER_NAME
#: The runtimes, in the order of the table and the picture, and their labels.
RUNTIMES = tuple(key for key, _, _ in DEPLOY_RUNTIMES)
RUNTIME_LABELS = {key: label for key, label, _ in DEPLOY_RUNTIMES}
#: Groups by the task of their configs (the backbones have none).
DENSE_GROUPS = {'ssdlite': 'detection', 'deeplabv3': 'segmentation'}
#: The configs' ImageNet normalisation (mean, std; BGR images are swapped to RGB first).
IMAGENET = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])


class BackboneNetwork(nn.Module):
    """A bare backbone as the runtimes run it: the configs' normalisation, then the backbone's
    last map. Both sit in ``core`` (what INT8 quantizes, as
    :class:`~mobileone_dense.export.graph.NetworkCore`): without a float op in front,
    litert-torch would make the graph's input itself int8."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        from mmdet.models.data_preprocessors import DetDataPreprocessor
        mean, std = IMAGENET
        normalize = Normalize(DetDataPreprocessor(mean=mean, std=std, bgr_to_rgb=True))
        self.core = nn.Sequential(normalize, backbone).eval()

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.core(image)  # mmdet backbones give a tuple of maps
        return tuple(out) if isinstance(out, (tuple, list)) else (out, )


@dataclass
class Model:
    """One network of a group, as every runtime runs it.

    ``postprocess``: a detector's post-processing (network outputs -> detections), else None.
    ``peer``: the group's MobileNetV2 (the denominator of the ``vs MNV2`` ratios).
    """
    group: str
    name: str
    size: int
    network: nn.Module
    params: int
    postprocess: Optional[Callable] = None
    peer: bool = False
    image: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.image = make_image((self.size, self.size))

    @property
    def key(self) -> str:
        """The model's name in the cache: group, model and input size."""
        return f'{self.group}_{"mnv2" if self.peer else self.name}_{self.size}'


def _fused(build: Callable[[], nn.Module], core: Callable[[nn.Module], nn.Module],
           size: int) -> nn.Module:
    """The fused model of ``build`` (seeded random weights, so that a rerun builds the model
    its cached files hold), its BN statistics measured first on four synthetic images through
    ``core(model)`` (the part of its network that INT8 quantizes; see
    :func:`~.common.measure_bn`)."""
    torch.manual_seed(0)
    model = build()
    images = torch.cat([make_image((size, size), seed) for seed in range(100, 104)])
    measure_bn(core(model), images)
    model.eval()  # not chained: mmdet's MobileNetV2.train() returns None
    return fuse(model, fold_bn=True)


def backbone_models(variants: Sequence[str], size: int, peer: bool) -> list[Model]:
    """The fused S0-S4 backbones (stage4 output) and, with ``peer``, mmdet's MobileNetV2."""
    builds = {v: lambda v=v: MobileOne(v, out_indices=(4, )).eval() for v in variants}
    if peer:
        builds[PEER] = apis.mobilenet_v2_backbone
    models = []
    for name, build in builds.items():
        fused = _fused(build, lambda m: BackboneNetwork(m).core, size)
        models.append(Model('backbone', name, size, BackboneNetwork(fused).eval(),
                            num_params(fused), peer=name == PEER))
    return models


def dense_models(group: str, variants: Sequence[str], configs: Sequence[str], size: int,
                 peer: bool, score_thr: float) -> list[Model]:
    """SSDLite or DeepLabV3 (:data:`DENSE_GROUPS`): the variants' configs, extra ``configs``
    (named by file) and, with ``peer``, the MobileNetV2 model, each fused, as its task's
    :meth:`~mobileone_dense.tasks.Task.network` (and a detector's ``postprocessor``)."""
    task_name = DENSE_GROUPS[group]
    options = ({'model.test_cfg.score_thr': score_thr} if task_name == 'detection'
               else SEG_OPTIONS)
    cfgs = {f'MobileOne-{v.upper()}': apis.mobileone_config(task_name, v, options)
            for v in variants}
    # the extra configs keep their classes (a head of their own)
    extra = options if task_name == 'detection' else None
    cfgs.update({Path(c).stem: apis.load_config(c, extra) for c in configs})
    if peer:
        cfgs[PEER] = apis.peer_config(task_name, options)
    models = []
    for name, cfg in cfgs.items():
        task = task_of(cfg)
        fused = _fused(lambda cfg=cfg: apis.build_model(cfg),
                       lambda m, task=task: task.network(m, (size, size)).core, size)
        post = task.postprocessor(fused, (size, size)) if task_name == 'detection' else None
        models.append(Model(group, name, size, task.network(fused, (size, size)),
                            num_params(fused), post, peer=name == PEER))
    return models


def build_groups(args: argparse.Namespace) -> dict[str, list[Model]]:
    groups = {}
    if args.variants:
        groups['backbone'] = backbone_models(args.variants, args.backbone_size, args.peers)
    if args.det_variants or args.det_configs:
        groups['ssdlite'] = dense_models('ssdlite', args.det_variants, args.det_configs,
                                         args.det_size, args.peers, args.score_thr)
    if args.seg_variants or args.seg_configs:
        # No peer: mmseg's MobileNetV2 DeepLabV3-D8 takes seconds per call at 512.
        groups['deeplabv3'] = dense_models('deeplabv3', args.seg_variants, args.seg_configs,
                                           args.seg_size, False, args.score_thr)
    return groups
