"""What the benchmarks share: where their files go, the segmentors' classes, tables, JSON and
machine facts."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

#: Where the benchmarks write: ``<subcommand>.json``, the export benchmark's picture and ONNX files.
WORK_DIR = Path('work_dirs/benchmark')
#: The segmentors' classes: VOC's 21, as ``configs/deeplabv3/mobileone_*_voc.py``; the
#: MobileNetV2 peer (an ADE20k config, 150 classes) is set to match.
SEG_CLASSES = 21
SEG_OPTIONS = {'model.decode_head.num_classes': SEG_CLASSES,
               'model.auxiliary_head.num_classes': SEG_CLASSES}


def machine_info() -> dict:
    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                torch=torch.__version__, threads=torch.get_num_threads())


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
