"""What the test modules share: BN set-ups that expose fusion bugs, the whole-network
comparison, a tiny demo dataset and config, and running a tool (in a subprocess or in this
process)."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from filelock import FileLock
from torch.nn.modules.batchnorm import _BatchNorm

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / 'configs/ssdlite/mobileone_mu0_demo.py'
VARIANTS = ('s0', 's1', 's2', 's3', 's4', 'mu0', 'mu1', 'mu2')
DATA = Path(__file__).resolve().parent / 'data'


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN random running statistics and affine parameters (a fresh BN hides
    fusion bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.randn(n, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model


def calibrate_bn(model: torch.nn.Module, seed: int = 0, size: int = 64) -> torch.nn.Module:
    """Random BN affine parameters, then running statistics measured on random images.

    Whole networks with made-up statistics blow activations up by orders of magnitude over 40
    blocks, which drowns any comparison in rounding; measured statistics keep them at the
    scale of a trained network while still being far from a fresh BN's (0, 1).
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, size, size, generator=g))
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def assert_fused_close(actual: torch.Tensor, expected: torch.Tensor, ulps: float = 5000) -> None:
    """Whole-network comparison, exact up to float rounding.

    Over 20-40 layers rounding grows with depth, so elementwise relative checks fail on values
    that cancel out; we bound the normwise relative error and the largest deviation relative to
    the largest value, both by ``ulps`` units of the dtype's epsilon (6e-4 in float32, 1e-12
    in float64). A real fusion bug (a padding, a bias, a skip kernel) is off by 1e-2 or more.
    """
    tol = ulps * torch.finfo(expected.dtype).eps
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    normwise = ((actual - expected).norm() / expected.norm()).item()
    peak = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert normwise <= tol and peak <= tol, (
        f'fused output differs: normwise {normwise:.2e}, peak {peak:.2e} > {tol:.1e}')


class LogCapture(logging.Handler):
    """Collects what mmengine's logger prints (its stream handler holds the original stdout,
    out of pytest's reach)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    @property
    def text(self):
        return '\n'.join(self.messages)


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
                      dataset=dict(data_root=data_root, pipeline=test_pipeline,
                                   ann_file='annotations/instances_val.json',
                                   data_prefix=dict(img='images/val/')))
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


def make_demo_data(out: Path, train: int = 8, val: int = 4, test: int = 2,
                   size: int = SIZE) -> Path:
    result = run_tool(ROOT / 'tools/make_demo_data.py', '--out', out, '--train', train, '--val',
                      val, '--test', test, '--size', size)
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


def run_in_process(name: str, *args) -> int:
    """Run ``tools/<name>.py`` in this process, as its command line does (no interpreter
    start-up); returns its exit status."""
    import importlib.util

    from mobileone_dense.utils.cli import run_tool as run_main
    spec = importlib.util.spec_from_file_location(f'tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return run_main(module.main, [str(a) for a in args])
    finally:
        _close_tool_loggers()


def _close_tool_loggers() -> None:
    """Close the handlers of mmengine's loggers once a tool run in this process is done.

    mmengine names a run's logger after the config and the second it started, and hands out
    the existing instance when the name repeats: a second tool run within the same second got
    the first run's console handler, bound to a capture stream pytest had closed since, and
    printed '--- Logging error ---'. Tests only (through mmengine's registry of instances)."""
    from mmengine.logging import MMLogger
    for logger in list(MMLogger._instance_dict.values()):
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)


def call_tool(name: str, *args, capsys) -> tuple[int, str]:
    """:func:`run_in_process` with pytest's ``capsys``: the exit status and what the tool wrote
    to stderr."""
    capsys.readouterr()
    status = run_in_process(name, *args)
    return status, capsys.readouterr().err


def error_line(status: int, stderr: str) -> str:
    """The one ``error: ...`` line of a tool run in-process, which must have failed cleanly."""
    assert status == 1, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr[-2000:]
    return lines[0]


# ------------------------------------------------------------------------------ demo exports
#: (H, W) of the exported demo models and of their test pipelines' Resize: neither square nor
#: the 256x256 scenes' size, so a mapping back to the original pixels that forgets or swaps an
#: axis changes the numbers.
EXPORT_SIZE = (224, 256)
#: The models ``make demo`` trained, as train-time checkpoints (tests/data/demo_models/README.md).
DEMO_MODELS = DATA / 'demo_models'
EXPORT_BASES = {'det': ROOT / 'configs/ssdlite/mobileone_mu0_demo.py',
                'seg': ROOT / 'configs/deeplabv3/mobileone_mu0_demo.py'}
EXPORT_CHECKPOINTS = {'det': DEMO_MODELS / 'ssdlite_mobileone_mu0.pth',
                      'seg': DEMO_MODELS / 'deeplabv3_mobileone_mu0.pth'}
EXPORT_CONFIGS = {
    'det': """
_base_ = '{base}'
data_root = '{data}/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({w}, {h}), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_test.json')
""",
    'seg': """
_base_ = '{base}'
data_root = '{data}'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({w}, {h}), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
""",
}
#: What the export writes for every test that needs an exported file.
EXPORT_FORMATS = ('onnx', 'tflite', 'tflite-int8')


def held_out_images(data: Path) -> list[Path]:
    return sorted((data / 'images' / 'test').glob('*.jpg'))


def save_checkpoint(model: torch.nn.Module, path: Path, classes, palette=None) -> Path:
    """An mmengine-style train-time checkpoint (meta with dataset_meta, optimizer, ...)."""
    dataset_meta = dict(classes=list(classes))
    if palette is not None:
        dataset_meta['palette'] = [list(p) for p in palette]
    torch.save(dict(meta=dict(epoch=3, iter=30, dataset_meta=dataset_meta,
                              mmengine_version='0.10.7'),
                    state_dict=model.state_dict(), optimizer=dict(state={}, param_groups=[])),
               path)
    return path


class DemoExports:
    """The demo detector and segmentor (trained by ``make demo``, tests/data/demo_models),
    exported (:data:`EXPORT_FORMATS`, calibrated on the config's training images) once per
    test run, when a test first asks for one, and a few demo scenes with their ground truth.
    Processes that share ``root`` (pytest-xdist's workers) export each model once between them.

    ``exports['det']`` is a dict: ``case``, ``config`` (the file), ``cfg``, ``task``, ``model``
    (the train-time model), ``checkpoint``, ``out`` (the export's folder), ``onnx``,
    ``tflite``, ``int8``, ``data`` (the demo scenes), ``size``, ``classes``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, dict] = {}

    def __getitem__(self, case: str) -> dict:
        if case not in self.cache:
            self.cache[case] = self._export(case)
        return self.cache[case]

    def _once(self, name: str, make) -> None:
        """``make()`` unless another process sharing ``root`` (an xdist worker) did it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f'{name}.lock')):
            if not (self.root / f'{name}.done').is_file():
                make()
                (self.root / f'{name}.done').touch()

    def _export(self, case: str) -> dict:
        from mobileone_dense.apis import build_model, load_config
        from mobileone_dense.tasks import task_of
        data, root = self.root / 'demo', self.root / case
        self._once('data', lambda: make_demo_data(data, train=4, val=1, test=12, size=256))
        config, out, checkpoint = root / 'demo.py', root / 'deploy', EXPORT_CHECKPOINTS[case]
        h, w = EXPORT_SIZE

        def export() -> None:
            root.mkdir()
            config.write_text(EXPORT_CONFIGS[case].format(base=EXPORT_BASES[case], data=data,
                                                          h=h, w=w))
            status = run_in_process('export', config, checkpoint, '--out-dir', out, '--format',
                                    *EXPORT_FORMATS, '--input-size', h, w, '--calib', 4)
            assert status == 0, f'tools/export.py failed on the {case} demo model'
        self._once(case, export)
        cfg = load_config(config)
        model = build_model(cfg, checkpoint=checkpoint)
        return dict(case=case, config=config, cfg=load_config(config), task=task_of(cfg),
                    model=model, checkpoint=checkpoint, out=out, onnx=out / 'model.onnx',
                    tflite=out / 'model.tflite', int8=out / 'model_int8.tflite',
                    data=data, size=EXPORT_SIZE,
                    classes=list(model.checkpoint_meta['dataset_meta']['classes']))
