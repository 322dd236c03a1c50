"""What the benchmarks share: where their files go, their timing options, the segmentors'
classes, tables, JSON and machine facts."""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..utils import cpu

#: Where the benchmarks write: ``<subcommand>.json``, the export benchmark's picture and ONNX files.
WORK_DIR = Path('work_dirs/benchmark')
#: The segmentors' classes: VOC's 21, as ``configs/deeplabv3/mobileone_*_voc.py``; the
#: MobileNetV2 peer (an ADE20k config, 150 classes) is set to match.
SEG_CLASSES = 21
SEG_OPTIONS = {'model.decode_head.num_classes': SEG_CLASSES,
               'model.auxiliary_head.num_classes': SEG_CLASSES}
#: The timing options of the benchmarks, by name (``seg_rounds``: ``--seg-rounds``): what
#: argparse needs besides the default, and the help text where several benchmarks share it.
TIMING_OPTIONS = {
    'rounds': dict(type=int, help='timed runs per model'),
    'seg_rounds': dict(type=int),
    'warmup': dict(type=int),
    'settle': dict(type=int),
    'settle_ms': dict(type=float),
    'calls': dict(type=int),
    'threads': dict(type=int, help="torch threads (default: torch's choice)"),
    'ort_pool': dict(choices=['shared', 'per-session']),
    'stat': dict(choices=['median', 'min']),
    'work_dir': dict(),
    'plot': dict(help="where the picture goes (default: %(default)s; '' for none)"),
}


def add_timing_arguments(parser: argparse.ArgumentParser,
                         helps: Optional[dict[str, str]] = None, **defaults) -> None:
    """Add to ``parser`` the timing options named in ``defaults``, in the order given:
    ``rounds=30`` adds ``--rounds`` (an int) with default 30. ``helps`` gives, by the same
    names, the help texts of the options whose text is the benchmark's own (see
    :data:`TIMING_OPTIONS`)."""
    helps = helps or {}
    unknown = (set(defaults) - set(TIMING_OPTIONS)) | (set(helps) - set(defaults))
    if unknown:
        raise TypeError(f'not a timing option given a default: {", ".join(sorted(unknown))}')
    for name, default in defaults.items():
        spec = dict(TIMING_OPTIONS[name], default=default)
        if name in helps:
            spec['help'] = helps[name]
        parser.add_argument('--' + name.replace('_', '-'), **spec)


def machine_info() -> dict:
    """The CPU a run was measured on, with the instruction sets its figures depend on."""
    return dict(cpu=platform.processor() or platform.machine(), cpu_name=cpu.cpu_name(),
                bf16=cpu.bf16_instructions(), int8_dot=cpu.int8_dot_instructions(),
                cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads())


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (prints fine in a terminal too)."""
    cells = [[f'{c:.2f}' if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = lambda r: '| ' + ' | '.join(str(c).ljust(w) for c, w in zip(r, widths)) + ' |'  # noqa
    return '\n'.join([line(header), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
                     + [line(r) for r in cells])


def save_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path


def measure_bn(module: nn.Module, images: torch.Tensor) -> None:
    """Replace the running statistics of every BN in ``module`` by those of ``images`` (one
    batch; at least 2 images, for the 1x1 maps of SSDLite's last levels), then switch it to
    eval mode.

    Random weights with a fresh BN's statistics (mean 0, variance 1) blow activations up by
    orders of magnitude over a deep network (fused SSDLite-MobileOne-S0's reach 1e5); measured
    statistics keep them at the scale of a trained network, which INT8 quantization needs (XNNPACK
    refuses a layer whose requantization scale leaves its range).
    """
    from torch.nn.modules.batchnorm import _BatchNorm
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # the plain average of the batch's statistics
    module.train()
    with torch.no_grad():
        module(images)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    module.eval()
