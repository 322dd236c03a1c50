"""MobileOne backbone for dense prediction.

Paper: Vasu et al., "MobileOne: An Improved One millisecond Mobile Backbone", CVPR 2023
(arXiv:2206.04040). Module names follow Apple's released checkpoints (``stage0`` .. ``stage4``,
``rbr_conv``, ``rbr_scale``, ``rbr_skip``, ``se.reduce``, ``se.expand``, ``reparam_conv``), so
Apple's ImageNet files load without conversion.

Example:
    >>> import torch
    >>> from mobileone_dense.models import MobileOne
    >>> model = MobileOne('s0', out_indices=(0, 1, 2, 3, 4)).eval()
    >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 224, 224))]
    [(1, 48, 112, 112), (1, 48, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 1024, 7, 7)]
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .arch import NUM_STAGES, ArchLike, get_arch
from .block import MobileOneBlock
from .checkpoint import load_mobileone_checkpoint
from .fuse import reparameterize_model


def _check_per_stage(name: str, values: Sequence[int]) -> tuple[int, ...]:
    if len(values) != NUM_STAGES or any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f'MobileOne: {name} must list {NUM_STAGES} positive integers, one per '
                         f'stage0 (stem) .. stage4, got {tuple(values)}.')
    return tuple(values)


class MobileOne(BaseModule):
    """MobileOne backbone (OpenMMLab contract: ``out_indices``, ``frozen_stages``,
    ``norm_eval``, ``forward`` returns a tuple).

    Args:
        arch: A variant name (``s0`` .. ``s4``, ``mu0`` .. ``mu2``) or a dict of
            :class:`~mobileone_dense.models.arch.MobileOneArch` fields.
        out_indices: Stages whose outputs ``forward`` returns: 0 is the stem (stride 2),
            1 .. 4 the stages at stride 4, 8, 16 and 32.
        frozen_stages: Stages 0 .. ``frozen_stages`` are frozen (eval mode, no gradient);
            -1 freezes nothing.
        norm_eval: Keep every BN layer in eval mode while training.
        strides: Stride of stage0 .. stage4. A stride replaced by 1 is usually paired with a
            dilation (output stride 16: stage4 at stride 1, dilation 2; output stride 8: stage3
            and stage4 at stride 1, dilations 2 and 4). The skip branches stay those of the
            original network, so ImageNet weights keep their meaning.
        dilations: Dilation of the kxk convs of stage0 .. stage4.
        norm_cfg: Norm layer of the branches (``BN`` or ``SyncBN``).
        deploy: Build the fused network (one conv per block), e.g. to load fused weights.
        with_cp: Gradient checkpointing of every block (saves memory, costs time).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads Apple's, mmpretrain's
            or timm's MobileOne weights (see :mod:`mobileone_dense.models.checkpoint`).
    """

    def __init__(self,
                 arch: ArchLike = 's0',
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 strides: Sequence[int] = (2, 2, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1, 1),
                 norm_cfg: Optional[dict] = None,
                 deploy: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = get_arch(arch)
        valid = tuple(range(NUM_STAGES))
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in valid for i in out_indices):
            raise ValueError(f'MobileOne: out_indices {out_indices} must be taken from {valid} '
                             f'(0 is the stem, 4 the last stage).')
        if frozen_stages not in (-1, ) + valid:
            raise ValueError(f'MobileOne: frozen_stages must be one of {(-1, ) + valid}, '
                             f'got {frozen_stages!r}.')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.strides = _check_per_stage('strides', strides)
        self.dilations = _check_per_stage('dilations', dilations)
        self.norm_cfg = norm_cfg or dict(type='BN')
        self.with_cp = with_cp
        self.channels = self.arch.channels

        # The stem always has a single conv branch (plus its 1x1 scale branch).
        self.stage0 = MobileOneBlock(3, self.channels[0], 3, stride=self.strides[0],
                                     dilation=self.dilations[0], num_conv_branches=1,
                                     has_skip=False, norm_cfg=self.norm_cfg, deploy=deploy)
        in_channels = self.channels[0]
        for i in range(1, NUM_STAGES):
            stage, in_channels = self._make_stage(i, in_channels, deploy)
            self.add_module(f'stage{i}', stage)
        self._freeze_stages()

    def _make_stage(self, index: int, in_channels: int,
                    deploy: bool) -> tuple[nn.Sequential, int]:
        num_pairs = self.arch.num_blocks[index - 1]
        first_se = num_pairs - self.arch.num_se_blocks[index - 1]
        out_channels = self.channels[index]
        blocks = []
        for pair in range(num_pairs):
            common = dict(num_conv_branches=self.arch.num_conv_branches, use_se=pair >= first_se,
                          norm_cfg=self.norm_cfg, deploy=deploy)
            # In the original network the first pair of every stage has stride 2, so its
            # depthwise block has no skip branch, whatever stride this config chose.
            blocks.append(MobileOneBlock(
                in_channels, in_channels, 3, stride=self.strides[index] if pair == 0 else 1,
                dilation=self.dilations[index], groups=in_channels, has_skip=pair > 0,
                **common))
            blocks.append(MobileOneBlock(in_channels, out_channels, 1,
                                         has_skip=in_channels == out_channels, **common))
            in_channels = out_channels
        return nn.Sequential(*blocks), out_channels

    @property
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f'stage{i}') for i in range(NUM_STAGES)]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            blocks = [stage] if i == 0 else stage
            for block in blocks:
                if self.with_cp and self.training and x.requires_grad:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for stage in self.stages[:self.frozen_stages + 1]:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'MobileOne':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            load_mobileone_checkpoint(self, self.init_cfg['checkpoint'],
                                      prefix=self.init_cfg.get('prefix'),
                                      map_location=self.init_cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def switch_to_deploy(self) -> None:
        """Fuse every block in place (the name mmdeploy calls before export)."""
        reparameterize_model(self, inplace=True)

    @property
    def deployed(self) -> bool:
        return all(m.deployed for m in self.modules() if isinstance(m, MobileOneBlock))
