"""What the benchmarks share: where their files go, the machine they ran on, how busy other
processes kept it, per-round ratios, tables and JSON."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..utils import cpu

#: Where the benchmarks write their JSON, pictures and converted models.
WORK_DIR = Path('work_dirs/benchmark')


def machine_info() -> dict:
    """The CPU a run was measured on, with the instruction sets its figures depend on."""
    return dict(cpu=platform.processor() or platform.machine(), cpu_name=cpu.cpu_name(),
                bf16=cpu.bf16_instructions(), int8_dot=cpu.int8_dot_instructions(),
                cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads())


def paired_median(fn: Callable[..., float], *series: Sequence[float]) -> float:
    """Median over rounds of ``fn`` applied to the candidates' times in the same round: a round
    takes seconds, so its ratio survives the machine's drift over minutes."""
    return statistics.median(fn(*values) for values in zip(*series))


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
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


class CPULoad:
    """Share of the machine's CPU time that other processes used inside the ``with`` block
    (Linux ``/proc/stat``): 0 on an idle machine, 1 when they kept every core busy."""

    def __enter__(self) -> 'CPULoad':
        self.start = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        self.stop = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        """Wall clock, CPU seconds all processes were busy, CPU seconds of this process."""
        with open('/proc/stat') as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        ours = resource.getrusage(resource.RUSAGE_SELF)
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf('SC_CLK_TCK')  # not idle
        return time.monotonic(), busy, ours.ru_utime + ours.ru_stime

    @property
    def others(self) -> float:
        wall = self.stop[0] - self.start[0]
        busy, ours = self.stop[1] - self.start[1], self.stop[2] - self.start[2]
        return max(0.0, busy - ours) / (wall * (os.cpu_count() or 1))


def load_notes(loads: dict[str, float], limit: float = 0.1) -> list[str]:
    """A line per timed part saying how busy other processes kept the CPU, and a warning when
    that makes the figures untrustworthy."""
    lines = [f'{name}: other processes used {100 * load:.0f}% of the CPU meanwhile'
             for name, load in loads.items()]
    if max(loads.values(), default=0) > limit:
        lines.append('WARNING: other processes kept the CPU busy during the run; PyTorch\'s '
                     'threads wait for each other at every op, so these figures are not '
                     'trustworthy: rerun on an idle machine.')
    return lines
