"""An independent, minimal re-statement of Apple's reference MobileOne (ml-mobileone) for tests.

It follows the structure of Apple's ``mobileone.py`` (``stage0`` block, ``_make_stage`` pairs,
``rbr_skip`` / ``rbr_scale`` / ``rbr_conv`` branches, SE on the last pairs) without sharing any
code with ``mobileone_dense``, so tests can check our naming and numerics against it.

Outputs of Apple's own code for S0-S4 (``data/apple_oracle``) are the reference for those
variants, and ``test_apple_oracle.py`` checks this restatement against them; the restatement
remains the reference for the micro variants mu0-mu2, which Apple's code lacks.
"""
import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = {
    # name: (pairs per stage, width multipliers, conv branches, use_se)
    's0': ((2, 8, 10, 1), (0.75, 1.0, 1.0, 2.0), 4, False),
    's1': ((2, 8, 10, 1), (1.5, 1.5, 2.0, 2.5), 1, False),
    's2': ((2, 8, 10, 1), (1.5, 2.0, 2.5, 4.0), 1, False),
    's3': ((2, 8, 10, 1), (2.0, 2.5, 3.0, 4.0), 1, False),
    's4': ((2, 8, 10, 1), (3.0, 3.5, 3.5, 4.0), 1, True),
    'mu0': ((2, 4, 6, 1), (0.75, 0.5, 0.5, 0.75), 3, False),
    'mu1': ((2, 6, 8, 1), (0.75, 0.75, 0.75, 1.0), 2, False),
    'mu2': ((2, 6, 8, 1), (0.75, 1.0, 1.0, 1.0), 2, False),
}


class SEBlock(nn.Module):

    def __init__(self, c, rd_ratio=0.0625):
        super().__init__()
        self.reduce = nn.Conv2d(c, int(c * rd_ratio), 1, 1, bias=True)
        self.expand = nn.Conv2d(int(c * rd_ratio), c, 1, 1, bias=True)

    def forward(self, x):
        w = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(w))))


class Block(nn.Module):

    def __init__(self, cin, cout, k, stride, padding, groups=1, inference_mode=False,
                 use_se=False, num_conv_branches=1):
        super().__init__()
        self.inference_mode = inference_mode
        self.se = SEBlock(cout) if use_se else nn.Identity()
        self.activation = nn.ReLU()
        self.k, self.groups, self.cin = k, groups, cin
        if inference_mode:
            self.reparam_conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=True)
            return
        self.rbr_skip = nn.BatchNorm2d(cin) if cout == cin and stride == 1 else None

        def conv_bn(kk, pad):
            m = nn.Sequential()
            m.add_module('conv', nn.Conv2d(cin, cout, kk, stride, pad, groups=groups, bias=False))
            m.add_module('bn', nn.BatchNorm2d(cout))
            return m
        self.rbr_conv = nn.ModuleList([conv_bn(k, padding) for _ in range(num_conv_branches)])
        self.rbr_scale = conv_bn(1, 0) if k > 1 else None

    def forward(self, x):
        if self.inference_mode:
            return self.activation(self.se(self.reparam_conv(x)))
        out = 0
        if self.rbr_skip is not None:
            out = out + self.rbr_skip(x)
        if self.rbr_scale is not None:
            out = out + self.rbr_scale(x)
        for conv in self.rbr_conv:
            out = out + conv(x)
        return self.activation(self.se(out))


class AppleMobileOne(nn.Module):

    def __init__(self, variant='s0', inference_mode=False, num_classes=1000):
        super().__init__()
        blocks, widths, k, use_se = VARIANTS[variant]
        self.inference_mode, self.k = inference_mode, k
        self.in_planes = min(64, int(64 * widths[0]))
        self.stage0 = Block(3, self.in_planes, 3, 2, 1, inference_mode=inference_mode)
        self.stage1 = self._make_stage(int(64 * widths[0]), blocks[0], 0)
        self.stage2 = self._make_stage(int(128 * widths[1]), blocks[1], 0)
        self.stage3 = self._make_stage(int(256 * widths[2]), blocks[2],
                                       blocks[2] // 2 if use_se else 0)
        self.stage4 = self._make_stage(int(512 * widths[3]), blocks[3],
                                       blocks[3] if use_se else 0)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(int(512 * widths[3]), num_classes)

    def _make_stage(self, planes, num_blocks, num_se):
        layers = []
        for ix, stride in enumerate([2] + [1] * (num_blocks - 1)):
            se = ix >= num_blocks - num_se
            layers.append(Block(self.in_planes, self.in_planes, 3, stride, 1, self.in_planes,
                                self.inference_mode, se, self.k))
            layers.append(Block(self.in_planes, planes, 1, 1, 0, 1, self.inference_mode, se,
                                self.k))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        return self.linear(torch.flatten(self.gap(self.features(x)[-1]), 1))

    def features(self, x):
        outs = []
        for i in range(5):
            x = getattr(self, f'stage{i}')(x)
            outs.append(x)
        return outs
