"""Shared pieces of the tool tests: a tiny demo dataset and config, and running a tool."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / 'configs/ssdlite/mobileone_mu0_demo.py'
SIZE = 64

TINY_CONFIG = """
_base_ = '{base}'
data_root = '{data}/'
size = {size}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(size, size), keep_ratio=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(size, size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
max_iters = {iters}
train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={interval}, max_keep_ckpts=10))
"""


def tool_env() -> dict:
    """The environment for a tool subprocess: one thread per process (2-core CI machines)."""
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def free_port() -> int:
    """A TCP port nobody listens on, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(*args, cwd: Path = ROOT, timeout: float = 120,
             python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, *map(str, args)], cwd=cwd, env=tool_env(), timeout=timeout,
                          capture_output=True, text=True)


def make_demo_data(out: Path, train: int = 8, val: int = 4) -> Path:
    result = run_tool(ROOT / 'tools/make_demo_data.py', '--out', out, '--train', train, '--val',
                      val, '--size', SIZE)
    assert result.returncode == 0, result.stderr
    return out


def write_tiny_config(path: Path, data: Path, iters: int = 4, interval: int = 2) -> Path:
    path.write_text(TINY_CONFIG.format(base=DEMO_CONFIG, data=data, size=SIZE, iters=iters,
                                       interval=interval))
    return path


def one_sentence_error(result: subprocess.CompletedProcess) -> str:
    """The error line of a tool that failed the way a user should see it."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:],
                                    result.stderr[-2000:])
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith('error: ')]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def call_tool(name: str, *args, capsys) -> tuple[int, str]:
    """Run ``tools/<name>.py`` in this process (no interpreter start-up, for the error paths);
    returns the exit status and what it wrote to stderr."""
    import importlib.util

    from mobileone_dense.utils.cli import run_tool as run_main
    spec = importlib.util.spec_from_file_location(f'tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    status = run_main(module.main, [str(a) for a in args])
    return status, capsys.readouterr().err


def error_line(status: int, stderr: str) -> str:
    """The one ``error: ...`` line of a tool run in-process, which must have failed cleanly."""
    assert status == 1, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr[-2000:]
    return lines[0]
