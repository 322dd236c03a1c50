"""The MobileOne block and its reparameterization.

At train time a block sums ``k`` conv+BN branches, a 1x1 conv+BN "scale" branch (when the
kernel is larger than 1) and a BN-only "skip" branch (when the original network keeps the
shape). :meth:`MobileOneBlock.reparameterize` folds all of them into one conv with bias, the
plain ``conv -> (SE) -> ReLU`` chain of the paper's Figure 3 (right).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import fuse_conv_bn_weights


class SEBlock(nn.Module):
    """Squeeze-excite as in MobileOne: global average pool, 1x1 conv down to
    ``int(channels * ratio)``, ReLU, 1x1 conv back, sigmoid, scale."""

    def __init__(self, channels: int, ratio: float = 0.0625) -> None:
        super().__init__()
        hidden = int(channels * ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return self._forward_onnx(x)
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.sigmoid(self.expand(F.relu(self.reduce(w))))
        return x * w

    def _forward_onnx(self, x: Tensor) -> Tensor:
        """The same function in the ops that ONNX Runtime runs in its blocked channel layout
        (NCHWc): AveragePool rather than ReduceMean, and a same-shape Mul rather than a
        broadcast one. Otherwise each SE layer makes it reorder the feature map out of that
        layout and back."""
        w = F.avg_pool2d(x, kernel_size=x.shape[2:])
        w = torch.sigmoid(self.expand(F.relu(self.reduce(w))))
        return x * F.interpolate(w, size=x.shape[2:], mode='nearest')


def fuse_bn(kernel: Optional[Tensor], bn: _BatchNorm, kernel_shape: tuple[int, ...],
            groups: int) -> tuple[Tensor, Tensor]:
    """Fold ``bn`` into a bias-free conv kernel; ``kernel=None`` means the identity.

    Args:
        kernel: Conv weight of shape ``(out, in / groups, kh, kw)``, or None for a BN-only skip
            branch, which becomes a centred identity kernel of ``kernel_shape`` that respects
            ``groups``.
        bn: The branch's batch norm (running statistics are used, as in eval mode).
        kernel_shape: The fused kernel's shape; a smaller kernel is zero-padded at its centre.
        groups: Groups of the conv.

    Returns:
        The fused ``(weight, bias)`` of the branch.
    """
    ref = bn.running_mean
    if kernel is None:
        out_channels, in_per_group, kh, kw = kernel_shape
        kernel = ref.new_zeros(kernel_shape)
        idx = torch.arange(out_channels, device=ref.device)
        kernel[idx, idx % in_per_group, kh // 2, kw // 2] = 1
    weight, bias = fuse_conv_bn_weights(kernel, None, bn.running_mean, bn.running_var, bn.eps,
                                        bn.weight, bn.bias)
    dh, dw = kernel_shape[2] - weight.shape[2], kernel_shape[3] - weight.shape[3]
    if dh or dw:
        weight = F.pad(weight, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    return weight.detach(), bias.detach()


class MobileOneBlock(nn.Module):
    """One MobileOne block (paper Figure 3).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel of the conv branches (3 for depthwise and stem blocks, 1 for
            pointwise blocks).
        stride: Stride of every branch.
        dilation: Dilation of the kxk branches (and of the fused conv).
        groups: Conv groups (``in_channels`` for a depthwise block).
        num_conv_branches: The over-parameterization factor k.
        use_se: Apply squeeze-excite before the ReLU.
        has_skip: Add the BN-only skip branch. It must follow the original network, not the
            stride a dense-prediction config chose; None derives it from the shape and stride.
        norm_cfg: Norm layer config (BN or SyncBN) of the branches.
        deploy: Build the fused block (one conv with bias) directly.
    """
    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride: int = 1,
                 dilation: int = 1,
                 groups: int = 1,
                 num_conv_branches: int = 1,
                 use_se: bool = False,
                 has_skip: Optional[bool] = None,
                 norm_cfg: Optional[dict] = None,
                 deploy: bool = False) -> None:
        super().__init__()
        if has_skip is None:
            has_skip = in_channels == out_channels and stride == 1
        if has_skip and in_channels != out_channels:
            raise ValueError(f'A skip branch needs in_channels == out_channels, got '
                             f'{in_channels} and {out_channels}.')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation if kernel_size > 1 else 1
        self.padding = self.dilation * (kernel_size - 1) // 2
        self.groups = groups
        self.num_conv_branches = num_conv_branches
        norm_cfg = norm_cfg or dict(type='BN')

        self.se = SEBlock(out_channels) if use_se else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.reparam_conv: Optional[nn.Conv2d] = None
        self.rbr_skip: Optional[nn.Module] = None
        self.rbr_scale: Optional[nn.Module] = None
        self.rbr_conv: Optional[nn.ModuleList] = None
        if deploy:
            self.reparam_conv = self._make_conv(kernel_size, bias=True)
            return
        if has_skip:
            self.rbr_skip = build_norm_layer(norm_cfg, in_channels)[1]
        self.rbr_conv = nn.ModuleList(
            self._make_conv_bn(kernel_size, norm_cfg) for _ in range(num_conv_branches))
        if kernel_size > 1:
            self.rbr_scale = self._make_conv_bn(1, norm_cfg)

    def _make_conv(self, kernel_size: int, bias: bool) -> nn.Conv2d:
        """The one place that sets stride, padding, dilation and groups of a conv."""
        dilation = self.dilation if kernel_size > 1 else 1
        return nn.Conv2d(self.in_channels, self.out_channels, kernel_size, stride=self.stride,
                         padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                         groups=self.groups, bias=bias)

    def _make_conv_bn(self, kernel_size: int, norm_cfg: dict) -> nn.Sequential:
        return nn.Sequential(OrderedDict(
            conv=self._make_conv(kernel_size, bias=False),
            bn=build_norm_layer(norm_cfg, self.out_channels)[1]))

    @property
    def strided_depthwise(self) -> bool:
        """True for a depthwise block (one group per input channel) with a stride."""
        return self.stride > 1 and self.groups == self.in_channels > 1

    @property
    def deployed(self) -> bool:
        """True once the branches are fused into ``reparam_conv``."""
        return self.reparam_conv is not None

    def forward(self, x: Tensor) -> Tensor:
        if self._float32_under_autocast(x):
            with torch.autocast('cpu', enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _float32_under_autocast(self, x: Tensor) -> bool:
        """Whether this block trains in float32 inside CPU bfloat16 autocast: a strided
        depthwise block does, because oneDNN's bfloat16 backward of a strided depthwise conv
        is several times slower than its float32 one on an AVX512-BF16 CPU, while every other
        conv of the network gains from bfloat16; the casts in and out cost less than the slow
        kernels (docs/training.md)."""
        return (self.strided_depthwise and self.training and torch.is_grad_enabled()
                and x.device.type == 'cpu' and torch.is_autocast_enabled('cpu')
                and torch.get_autocast_dtype('cpu') == torch.bfloat16)

    def _forward(self, x: Tensor) -> Tensor:
        if self.reparam_conv is not None:
            out = self.reparam_conv(x)
        else:
            # Apple's summation order (skip, scale, then the conv branches), so that outputs
            # match the reference implementation to the last bit.
            out = 0
            if self.rbr_skip is not None:
                out = self.rbr_skip(x)
            if self.rbr_scale is not None:
                out = out + self.rbr_scale(x)
            for branch in self.rbr_conv:
                out = out + branch(x)
        return self.act(self.se(out))

    @torch.no_grad()
    def fused_weights(self) -> tuple[Tensor, Tensor]:
        """The weight and bias of the single conv equivalent to all branches (eval mode)."""
        if self.reparam_conv is not None:
            return self.reparam_conv.weight.detach(), self.reparam_conv.bias.detach()
        shape = tuple(self.rbr_conv[0].conv.weight.shape)
        parts = [fuse_bn(b.conv.weight, b.bn, shape, self.groups) for b in self.rbr_conv]
        if self.rbr_scale is not None:
            parts.append(fuse_bn(self.rbr_scale.conv.weight, self.rbr_scale.bn, shape,
                                 self.groups))
        if self.rbr_skip is not None:
            parts.append(fuse_bn(None, self.rbr_skip, shape, self.groups))
        weight = torch.stack([w for w, _ in parts]).sum(0)
        bias = torch.stack([b for _, b in parts]).sum(0)
        return weight, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse all branches into ``reparam_conv`` in place (a no-op once fused)."""
        if self.reparam_conv is not None:
            return
        weight, bias = self.fused_weights()
        conv = self._make_conv(self.kernel_size, bias=True).to(weight)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.reparam_conv = conv
        self.rbr_conv = self.rbr_scale = self.rbr_skip = None

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, dilation={self.dilation}, groups={self.groups}, '
                f'branches={self.num_conv_branches}, deployed={self.deployed}')
