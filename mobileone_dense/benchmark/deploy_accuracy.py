"""``tools/benchmark.py deploy --accuracy``: the models ``make demo`` trained, in every
deployment format, each scored on the demo's val split as a checkpoint is.

Nothing is trained. Each demo checkpoint (``work_dirs/demo_detection``, SSDLite-MobileOne-mu0;
``work_dirs/demo_segmentation``, DeepLabV3-MobileOne-mu0; the file their ``last_checkpoint``
names) is exported once (:func:`mobileone_dense.export.pipeline.export`: ``fused.pth``, ONNX,
TFLite FP32 and TFLite INT8 calibrated on the config's training images), at the size its
test pipeline resizes the demo's scenes to (where ``tools/test.py`` runs the checkpoint; the
export's default), and each file is
evaluated with the config's own evaluator: box mAP and mIoU per format. The fused ``.pth`` runs
through ``tools/test.py`` (mmengine's test loop), the exported files through
:func:`mobileone_dense.tasks.deployed.evaluate_deployed` in their runtimes. The exports are
cached beside the benchmark's converted models and redone when the checkpoint or the code that
writes the files changes (or with ``--reconvert``).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .. import apis
from ..errors import UsageError
from ..tasks import task_of
from .common import format_table

#: Task -> (config, the demo's work dir, metric key, metric name).
DEMOS = {
    'detection': ('configs/ssdlite/mobileone_mu0_demo.py', 'work_dirs/demo_detection',
                  'coco/bbox_mAP', 'box mAP'),
    'segmentation': ('configs/deeplabv3/mobileone_mu0_demo.py', 'work_dirs/demo_segmentation',
                     'mIoU', 'mIoU'),
}
#: Format label -> (the file export writes, the export format that writes it).
FORMATS = {'fused PyTorch': ('fused.pth', None), 'ONNX Runtime FP32': ('model.onnx', 'onnx'),
           'LiteRT FP32': ('model.tflite', 'tflite'),
           'LiteRT INT8': ('model_int8.tflite', 'tflite-int8')}


def demo_checkpoint(work_dir: Path) -> Path:
    """The checkpoint a demo's ``last_checkpoint`` names (or the file of that name in
    ``work_dir``, for a moved checkout)."""
    record = work_dir / 'last_checkpoint'
    if record.is_file():
        named = Path(record.read_text().strip())
        for path in (named, work_dir / named.name):
            if path.is_file():
                return path
    raise UsageError(f'No demo-trained checkpoint in {work_dir} (no last_checkpoint naming a '
                     f'file that exists): run make demo first.')


def check_demo_checkpoints() -> dict[str, Path]:
    """Each demo's checkpoint; one sentence when one is missing."""
    return {task: demo_checkpoint(apis.ROOT / work) for task, (_, work, _, _) in DEMOS.items()}


def demo_input_size(cfg) -> list[int]:
    """(H, W) to export the demo models at: the export's default, the size at which the test
    pipeline feeds the demo's square scenes to the checkpoint (``tools/test.py``), so that the
    formats' figures compare with the checkpoint's."""
    return list(task_of(cfg).default_input_size(cfg))


def _stamp(checkpoint: Path, input_size: Sequence[int]) -> dict:
    """What the exports of ``checkpoint`` depend on: the file, the input size, and the code
    that writes the files (:func:`~.deploy_convert.writers_source` and the INT8 calibration),
    so that a change of the writers exports again."""
    from ..export import calibration
    from .deploy_convert import writers_source
    stat = checkpoint.stat()
    code = writers_source() + inspect.getsource(calibration)
    return dict(checkpoint=str(checkpoint.resolve()), mtime_ns=stat.st_mtime_ns,
                bytes=stat.st_size, input_size=list(input_size),
                code=hashlib.sha1(code.encode()).hexdigest())


def export_demo(config: Path, checkpoint: Path, out_dir: Path, reconvert: bool) -> dict:
    """Every format of one demo model in ``out_dir``, at :func:`demo_input_size` (reused when
    exported from the same checkpoint file at that size); returns the export's report."""
    from ..export.pipeline import export
    size = demo_input_size(apis.load_config(config))
    stamp = _stamp(checkpoint, size)
    record = out_dir / 'deploy_accuracy.json'
    files = [out_dir / name for name, _ in FORMATS.values()]
    if not reconvert and record.is_file() and all(f.is_file() for f in files):
        saved = json.loads(record.read_text())
        if saved.get('stamp') == stamp:
            print(f'  {config.name}: exports of {checkpoint.name} cached in {out_dir}', flush=True)
            return saved['report']
    print(f'  {config.name}: exporting {checkpoint.name} at {size[0]}x{size[1]} (fused .pth, '
          f'ONNX, TFLite FP32, TFLite INT8; a few minutes) into {out_dir}', flush=True)
    log = []
    formats = [fmt for _, fmt in FORMATS.values() if fmt]
    report = export(config, checkpoint, out_dir, formats=formats, input_size=size,
                    log=log.append)
    record.write_text(json.dumps(dict(stamp=stamp, report=report, log=log), indent=1,
                                 default=str))
    return report


def evaluate_pth(deploy_config: Path, checkpoint: Path, work_dir: Path) -> dict:
    """``tools/test.py DEPLOY_CONFIG fused.pth`` in a process of its own; its metrics."""
    result = subprocess.run([sys.executable, str(apis.ROOT / 'tools/test.py'), str(deploy_config),
                             str(checkpoint), '--work-dir', str(work_dir)], cwd=apis.ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ['(no output)'])[-1]
        raise UsageError(f'tools/test.py could not evaluate {checkpoint} ({tail}): run it '
                         f'by hand to see why.')
    return json.loads((work_dir / 'test_metrics.json').read_text())['metrics']


def evaluate_demo(task: str, checkpoint: Path, out_dir: Path, threads: int,
                  reconvert: bool) -> dict:
    """The demo model of ``task`` in every format: format -> metrics and file."""
    from ..tasks.deployed import evaluate_deployed
    config, _, key, name = DEMOS[task]
    config = apis.ROOT / config
    export_demo(config, checkpoint, out_dir, reconvert)
    deploy_config = out_dir / 'deploy_config.py'
    # no dataloader worker: this process has the exporters' threads (JAX's among them), which
    # a forked worker would inherit stopped
    cfg = apis.load_config(deploy_config, {'test_dataloader.num_workers': 0,
                                           'test_dataloader.persistent_workers': False})
    results = {}
    for label, (file, fmt) in FORMATS.items():
        path = out_dir / file
        print(f'  {task}: evaluating {label} ({path.name})', flush=True)
        if fmt is None:
            metrics = evaluate_pth(deploy_config, path, out_dir / 'test_pth')
        else:
            metrics = evaluate_deployed(cfg, path, threads)
        metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}
        results[label] = dict(file=str(path), metric=name, value=metrics.get(key),
                              metrics=metrics)
        print(f'  {task}: {label}: {name} {_figure(metrics.get(key))}', flush=True)
    return results


def _figure(value) -> str:
    """A metric as printed: COCO's mAP (0..1) to 3 decimals, mmseg's mIoU (%) to 2."""
    return '-' if value is None else f'{value:.3f}' if value <= 1 else f'{value:.2f}'


def accuracy_table(results: dict) -> str:
    header = ['format'] + [f'{DEMOS[t][3]} ({Path(DEMOS[t][0]).stem}, {t})' for t in results]
    return format_table(header, [[label] + [_figure(results[t][label]['value']) for t in results]
                                 for label in FORMATS])


def evaluate_demos(work_dir: Path, threads: int, reconvert: bool = False) -> dict:
    """Every demo model in every format (see the module doc), exported under
    ``work_dir/accuracy``: prints a table; returns task -> format -> metrics, and the table."""
    checkpoints = check_demo_checkpoints()
    print('accuracy of the demo-trained models in every format (make demo\'s checkpoints)',
          flush=True)
    results = {task: evaluate_demo(task, checkpoint, Path(work_dir) / 'accuracy' / task,
                                   threads, reconvert)
               for task, checkpoint in checkpoints.items()}
    text = accuracy_table(results)
    print(text)
    return dict(results=results, table=text,
                checkpoints={t: str(c) for t, c in checkpoints.items()})


def evaluate_demos_apart(work_dir: Path, threads: int, reconvert: bool = False) -> dict:
    """:func:`evaluate_demos` in a process of its own (``tools/benchmark.py deploy --accuracy``
    with nothing to time), for a process that gave ONNX Runtime its shared thread pool: the
    sessions of the export and of the evaluation have a pool each, which ONNX Runtime then
    refuses. Its output goes to the terminal as it comes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'accuracy.json'
        command = [sys.executable, str(apis.ROOT / 'tools/benchmark.py'), 'deploy',
                   '--variants', '--det-variants', '--seg-variants', '--accuracy',
                   '--threads', str(threads), '--work-dir', str(Path(work_dir).resolve()),
                   '--out', str(out)]
        if subprocess.run(command + (['--reconvert'] if reconvert else []),
                          cwd=apis.ROOT).returncode != 0:
            raise UsageError('The accuracy part (tools/benchmark.py deploy --accuracy, run in '
                             'a process of its own) failed: see its error above.')
        return json.loads(out.read_text())['accuracy']
