"""How the tools start and end: the log readers start without torch, a finished run stops its
data loader workers itself, and a tool exits with its status."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT, run_tool
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader

from mobileone_dense.engine.runner import stop_dataloader_workers


def imported_modules(stderr: str) -> set:
    """The module names in the lines of ``python -X importtime`` (``self | cumulative | name``)."""
    return {line.rsplit('|', 1)[1].strip() for line in stderr.splitlines()
            if line.startswith('import time:') and line.count('|') == 2}


@pytest.mark.parametrize('tool, command', [('demo_summary.py', ['table']), ('analyze_logs.py', [])])
def test_log_readers_start_without_torch_or_mmdet(tool, command, tmp_path):
    result = run_tool('-X', 'importtime', ROOT / 'tools' / tool, *command, tmp_path / 'nowhere')
    assert result.returncode == 1, result.stderr[-2000:]
    assert [ln for ln in result.stderr.splitlines() if ln.startswith('error: ')], \
        result.stderr[-2000:]
    modules = imported_modules(result.stderr)
    assert 'mobileone_dense.utils.cli' in modules  # the parse did see this run's imports
    heavy = sorted(m for m in modules if m.split('.')[0] in ('torch', 'mmdet', 'mmseg', 'mmcv'))
    assert not heavy, heavy


class Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, index):
        return torch.tensor([index])


def test_stop_dataloader_workers_lets_the_workers_exit_by_themselves():
    # The loops of a trained Runner: an iteration-based train loop (mmengine's endless wrapper
    # around the iterator of a loader with persistent workers), a val loop never built.
    loader = DataLoader(Numbers(), batch_size=4, num_workers=1, persistent_workers=True)
    endless = _InfiniteDataloaderIterator(loader)
    next(endless)
    workers = list(endless._iterator._workers)
    train_loop = SimpleNamespace(dataloader=loader, dataloader_iterator=endless)
    runner = SimpleNamespace(_train_loop=train_loop, _val_loop=dict(type='ValLoop'),
                             _test_loop=None)
    assert stop_dataloader_workers(runner) == 1  # one iterator, held in two places
    for worker in workers:
        worker.join(timeout=30)
        # 0: the worker heard its stop signal and returned; torch kills the ones that do not
        # answer within 5 s (exit code -15), which is what garbage collection led to.
        assert worker.exitcode == 0, worker.exitcode
    assert stop_dataloader_workers(runner) == 1  # again: nothing left to stop, no error


def test_stop_dataloader_workers_without_workers():
    loader = DataLoader(Numbers(), batch_size=4, num_workers=0)
    next(iter(loader))
    runner = SimpleNamespace(_train_loop=SimpleNamespace(dataloader=loader),
                             _val_loop=None, _test_loop=None)
    assert stop_dataloader_workers(runner) == 0


LIGHT = ("import importlib.util, sys; sys.modules['mobileone_dense'] = "
         "importlib.util.module_from_spec(importlib.util.find_spec('mobileone_dense')); "
         "from mobileone_dense.utils import cli; ")


@pytest.mark.parametrize('body, status', [
    ('cli.run_tool_and_exit(lambda argv: 3)', 3),
    ('cli.run_tool_and_exit(lambda argv: None)', 0),
    ("cli.run_tool_and_exit(lambda argv: (_ for _ in ()).throw(cli.UsageError('no such file')))",
     1),
])
def test_run_tool_and_exit_exits_with_the_tools_status(body, status):
    result = subprocess.run([sys.executable, '-c', LIGHT + body], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == status, result.stderr[-2000:]
    if status == 1:
        assert result.stderr.strip() == 'error: no such file'
