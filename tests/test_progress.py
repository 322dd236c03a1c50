"""The training progress bar (mobileone_dense/engine/progress.py) driven by a stand-in runner:
redrawn in place on a terminal, a line every ~10% elsewhere, nothing on other ranks, and
mmengine's console handler quieted while it draws but its log file untouched."""
import io
import logging
import re
from types import SimpleNamespace

import pytest
import torch

from mobileone_dense.engine.progress import MODE_ENV, ProgressBarHook, format_seconds


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def train(total: int, tty: bool = False, rank: int = 0, logger=None, losses=None) -> str:
    stream = Stream(tty)
    hook = ProgressBarHook(window=2, stream=stream)
    runner = SimpleNamespace(rank=rank, iter=0, max_iters=total,
                             logger=logger or logging.getLogger('progress-test'))
    hook.before_train(runner)
    for i in range(total):
        runner.iter = i
        loss = torch.tensor(losses[i] if losses else 1.0, requires_grad=True)
        hook.after_train_iter(runner, i, outputs={'loss': loss * 1})
    hook.after_train(runner)
    hook.after_run(runner)
    return stream.getvalue()


@pytest.fixture(autouse=True)
def no_mode(monkeypatch):
    monkeypatch.delenv(MODE_ENV, raising=False)


def test_a_line_every_tenth_off_a_terminal():
    out = train(100)
    done = [int(line.split()[1].split('/')[0]) for line in out.splitlines()]
    assert done == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert all(re.fullmatch(r'train \d+/100 \[[#-]{20}\] loss 1  [\d.]+ s/it  ETA \d+:\d\d', line)
               for line in out.splitlines()), out


def test_every_iteration_when_asked(monkeypatch):
    monkeypatch.setenv(MODE_ENV, 'each')
    assert len(train(30, tty=True).splitlines()) == 30


def test_redrawn_in_place_on_a_terminal():
    out = train(5, tty=True, losses=[4.0, 2.0, 1.0, 1.0, 1.0])
    assert out.count('\r') == 5 and out.endswith('\x1b[K\n') and out.count('\n') == 1
    last = out.rsplit('\r', 1)[1]
    assert last.startswith('train 5/5 [####################] loss 1 ') and 'ETA 0:00' in last
    assert 'train 2/5 [########------------] loss 3 ' in out  # mean of the last 2 iterations


def test_only_rank_0_draws():
    assert train(10, rank=1) == ''


def test_console_quieted_while_drawing_file_kept(tmp_path):
    logger = logging.getLogger('progress-test-handlers')
    console, file = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / 'log')
    console.setLevel(logging.INFO)
    file.setLevel(logging.INFO)
    logger.handlers = [console, file]
    hook = ProgressBarHook(stream=Stream(False))
    runner = SimpleNamespace(rank=0, iter=0, max_iters=2, logger=logger)
    hook.before_train(runner)
    assert console.level == logging.WARNING and file.level == logging.INFO
    hook.after_run(runner)
    assert console.level == logging.INFO
    file.close()


def test_format_seconds():
    assert format_seconds(59.6) == '1:00'
    assert format_seconds(3725) == '1:02:05'
    assert format_seconds(float('nan')) == '?'
