"""How busy other processes kept the machine while a benchmark measured (Linux ``/proc/stat``)."""
from __future__ import annotations

import os
import resource
import time


class CPULoad:
    """Share of the machine's CPU time that other processes used inside the ``with`` block.

    ``with CPULoad() as load: ...`` then ``load.others``: 0 on an idle machine, 1 when other
    processes kept every core busy the whole time.
    """

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
        tick = os.sysconf('SC_CLK_TCK')
        busy = (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait
        return time.monotonic(), busy, ours.ru_utime + ours.ru_stime

    @property
    def others(self) -> float:
        wall = self.stop[0] - self.start[0]
        busy = self.stop[1] - self.start[1]
        ours = self.stop[2] - self.start[2]
        return max(0.0, busy - ours) / (wall * (os.cpu_count() or 1))


def load_warning(loads: dict[str, float], threads: int, limit: float = 0.1) -> list[str]:
    """A warning line when other processes used more than ``limit`` of the CPU while any group
    of a benchmark was timed (``loads``: group -> :attr:`CPULoad.others`), else none."""
    if max(loads.values(), default=0) <= limit:
        return []
    return ['WARNING: other processes kept the CPU busy during the run; PyTorch with '
            f'{threads} threads suffers most from that (its threads wait for each other at '
            'every op), so these ratios are not trustworthy: rerun on an idle machine.']
