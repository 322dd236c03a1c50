"""The training progress bar: one console line with iteration i/N, loss, s/iteration and ETA.

:class:`ProgressBarHook` (registered in mmengine's root ``HOOKS``; ``tools/train.py --progress``
adds it) draws it on rank 0 only: redrawn in place (``\\r``) on a terminal, a plain line every
~10% of the run otherwise (CI, pipes), or a plain line every iteration under
``MOBILEONE_DENSE_PROGRESS=each``, for a caller that redraws them itself (the demo scripts). Its
lines start with ``train <i>/<N>``. While it draws, mmengine's console copy of the log keeps only
warnings and errors; the log file in the work dir keeps everything.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import deque
from typing import Optional, TextIO

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

#: Set to ``each`` for a plain line at every iteration.
MODE_ENV = 'MOBILEONE_DENSE_PROGRESS'


def format_seconds(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    if not math.isfinite(seconds):
        return '?'
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def progress_line(done: int, total: int, loss: float, seconds_per_iter: float,
                  width: int = 20) -> str:
    """The line's form: ``train DONE/TOTAL [###-------] loss LOSS  SECONDS s/it  ETA M:SS``."""
    filled = width * done // total if total else width
    eta = (total - done) * seconds_per_iter
    return (f'train {done}/{total} [{"#" * filled}{"-" * (width - filled)}] loss {loss:.4g}  '
            f'{seconds_per_iter:.2f} s/it  ETA {format_seconds(eta)}')


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Draw the training progress on the main process (see the module docstring).

    Args:
        window: the loss shown is the mean of the last ``window`` iterations' loss.
        stream: where to draw (default: ``sys.stdout`` at the start of training).
        quiet_console: while drawing, raise the level of mmengine's console handler to
            WARNING so that its INFO lines do not break the bar (the log file keeps them).
    """
    priority = 'LOW'  # after RuntimeInfoHook and the optimizer step

    def __init__(self, window: int = 10, stream: Optional[TextIO] = None,
                 quiet_console: bool = True):
        self.window = window
        self.stream = stream
        self.quiet_console = quiet_console
        self._losses: deque = deque(maxlen=window)
        self._quieted: list = []
        self._open_line = False

    def _main(self, runner) -> bool:
        return runner.rank == 0

    def before_train(self, runner) -> None:
        if not self._main(runner):
            return
        self._out = self.stream or sys.stdout
        mode = os.environ.get(MODE_ENV, '')
        self._each = mode == 'each'
        self._redraw = not self._each and self._out.isatty()
        self._total = runner.max_iters
        self._start_iter = runner.iter  # > 0 when resumed
        self._start = time.perf_counter()
        self._first_done: Optional[float] = None
        self._tenth = -1
        if self.quiet_console:
            for handler in getattr(runner.logger, 'handlers', []):
                if type(handler) is logging.StreamHandler and handler.level < logging.WARNING:
                    self._quieted.append((handler, handler.level))
                    handler.setLevel(logging.WARNING)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._main(runner):
            return
        now = time.perf_counter()
        loss = (outputs or {}).get('loss')
        if loss is not None:  # a tensor that may still require grad
            self._losses.append(float(loss.detach()) if hasattr(loss, 'detach') else float(loss))
        done = runner.iter + 1
        ran = done - self._start_iter
        if ran <= 1:  # the first iteration includes the data loaders' start
            self._first_done = now
            seconds_per_iter = now - self._start
        else:
            seconds_per_iter = (now - self._first_done) / (ran - 1)
        mean_loss = sum(self._losses) / len(self._losses) if self._losses else float('nan')
        line = progress_line(done, self._total, mean_loss, seconds_per_iter)
        if self._redraw:
            self._out.write(f'\r{line}\x1b[K')
            self._open_line = True
        else:
            tenth = 10 * done // max(self._total, 1)
            if self._each or ran == 1 or tenth > self._tenth or done == self._total:
                self._out.write(line + '\n')
            self._tenth = tenth
        self._out.flush()

    def _end_line(self) -> None:
        if self._open_line:
            self._out.write('\n')
            self._out.flush()
            self._open_line = False

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not self._main(runner) or not hasattr(self, '_out') or not metrics:
            return
        self._end_line()
        shown = ', '.join(f'{k} {v:.4g}' for k, v in metrics.items()
                          if isinstance(v, (int, float)))
        self._out.write(f'val after {runner.iter} iterations: {shown}\n')
        self._out.flush()

    def after_train(self, runner) -> None:
        if self._main(runner) and hasattr(self, '_out'):
            self._end_line()

    def after_run(self, runner) -> None:
        for handler, level in self._quieted:
            handler.setLevel(level)
        self._quieted.clear()
