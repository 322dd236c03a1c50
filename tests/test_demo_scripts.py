"""Both halves of `make demo`, run as the user runs them (scripts/demo_detection.sh and
scripts/demo_segmentation.sh), on tiny generated data with a few iterations: training (in two
CPU processes for the segmentation demo: BN, not SyncBN) with the progress bar, tools/test.py's
metrics, the pictures of tools/image_demo.py, the curves of tools/analyze_logs.py, the
summary.json and result lines of tools/demo_summary.py and the table `make demo` ends with;
the terminal shows only those, the work dir keeps the full output."""
import importlib.util
import json
import math
import re
import subprocess
import sys

from tools_helpers import ROOT, error_line, free_port, make_demo_data, tool_env

from mobileone_dense.utils import cli

CLASSES = ('background', 'ellipse', 'rectangle', 'triangle', 'star', 'cross')
# Every iteration logged unsmoothed and the lr at its peak from the start, so that a few
# iterations show the loss falling.
LOG_EACH_ITER = ('default_hooks.logger.interval=1 log_processor.window_size=1 '
                 'param_scheduler.0.start_factor=1')
PROGRESS = r'^{tag}: train (\d+)/(\d+) \[[#-]{{20}}\] loss (\S+)  ([\d.]+) s/it  ETA \d+:\d\d$'


def start_demo(script: str, tmp_path, procs: int, options: str) -> subprocess.CompletedProcess:
    data = make_demo_data(tmp_path / 'demo')
    env = dict(tool_env(), DEMO_DATA=str(data), WORK_DIR=str(tmp_path / 'work'),
               DEMO_PROCS=str(procs), DEMO_CFG_OPTIONS=f'{options} {LOG_EACH_ITER}',
               PORT=str(free_port()), PYTHON=sys.executable)
    env.pop('MOBILEONE_DENSE_PROGRESS', None)
    return subprocess.run(['bash', str(ROOT / 'scripts' / script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)


def run_demo(script: str, tmp_path, procs: int, options: str) -> str:
    """The demo's terminal output (stdout; stderr must stay empty)."""
    result = start_demo(script, tmp_path, procs, options)
    work_log = tmp_path / 'work' / 'demo.log'
    tail = work_log.read_text()[-3000:] if work_log.is_file() else ''
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:] + tail
    assert result.stderr == '', result.stderr[-3000:]
    return result.stdout


def check_terminal_and_logs(out: str, work, tag: str, iterations: int) -> None:
    """A header, one progress bar drawn by rank 0 alone (a plain line every ~10% off a terminal)
    and no mmengine log line on the terminal; the full output and mmengine's log in the work
    dir."""
    lines = out.splitlines()
    assert lines[0].startswith(f'== {tag}: '), out
    bars = re.findall(PROGRESS.format(tag=tag), out, re.M)
    assert bars, out
    assert [int(b[0]) for b in bars] == list(range(1, iterations + 1)), out  # one bar, in order
    assert all(int(b[1]) == iterations for b in bars), out
    assert all(math.isfinite(float(b[2])) and float(b[3]) > 0 for b in bars), out
    for noise in ('Config:', 'mmengine - INFO', 'Iter(train)', 'Epoch(train)', 'Warning'):
        assert noise not in out, (noise, out)
    assert len(lines) <= 20, out
    full = (work / 'demo.log').read_text()
    assert 'Config:' in full and 'metrics written to' in full
    assert not re.search(PROGRESS.format(tag=r'\S+'), full, re.M)  # those went to the terminal
    mmengine_logs = sorted(work.glob('2*/2*.log'))
    assert len(mmengine_logs) == 2  # training and testing
    assert re.search(rf'Saving checkpoint at {iterations} (iterations|epochs)',
                     mmengine_logs[0].read_text())
    assert (work / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert f'{tag}: pictures ' in out and f'{tag}: full log {work / "demo.log"}' in out
    assert re.search(rf'^{tag}: wall time \d+ s \(training \d+ s, [\d.]+ s/iteration\)$', out,
                     re.M), out


def check_summary(work, demo: str, iterations: int) -> dict:
    """summary.json: finite figures, and (detection) a loss that fell while training."""
    summary = json.loads((work / 'summary.json').read_text())
    assert summary['demo'] == demo
    assert math.isfinite(summary['value'])
    assert summary['iterations'] == iterations
    assert 0 < summary['s_per_iter'] < 60 and 0 < summary['train_time_s'] <= summary['wall_time_s']
    assert math.isfinite(summary['first_loss']) and math.isfinite(summary['last_loss'])
    if demo == 'detection':
        # The model learns: -11% to -19% over these few iterations; at lr 0 the loss moves by
        # ~1%. (The segmentation demo's class-balanced loss over 4 iterations of 8 scenes moves
        # with which classes each batch holds, so it is not a measure of learning there.)
        assert summary['last_loss'] < 0.97 * summary['first_loss'], summary
    return summary


def demo_summary(*args, capsys) -> tuple:
    """Run tools/demo_summary.py in this process (its imports cost seconds); returns the exit
    status, stdout and stderr."""
    spec = importlib.util.spec_from_file_location('demo_summary', ROOT / 'tools/demo_summary.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    status = cli.run_tool(module.main, [str(a) for a in args])
    return (status, *capsys.readouterr())


def check_table(work, summary: dict, metric: str, capsys) -> None:
    status, out, err = demo_summary('table', work, capsys=capsys)
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split()[:3] == ['demo', 'metric', 'target']
    verdict = 'pass' if summary['passed'] else 'FAIL'
    assert row.startswith(summary['demo']) and metric in row and f' {verdict} ' in row, row
    assert row.endswith(summary['pictures'] + '/'), row


def test_detection_demo_script(tmp_path, capsys):
    out = run_demo('demo_detection.sh', tmp_path, 1, 'train_cfg.max_iters=6')
    work = tmp_path / 'work'
    check_terminal_and_logs(out, work, 'demo-det', 6)
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_6.pth')
    metrics = json.loads((work / 'test_metrics.json').read_text())['metrics']
    summary = check_summary(work, 'detection', 6)
    assert summary['value'] == metrics['coco/bbox_mAP']
    assert summary['passed'] == (metrics['coco/bbox_mAP'] >= 0.5)
    assert f'val box mAP@[0.5:0.95] {metrics["coco/bbox_mAP"]:.3f} ' in out
    # the four val scenes of the tiny data set, drawn
    assert sorted(p.name for p in (work / 'pictures').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
    assert f'pictures {work / "pictures"}/ (4 PNGs)' in out
    check_table(work, summary, f'box mAP {metrics["coco/bbox_mAP"]:.3f}', capsys)


def test_segmentation_demo_script(tmp_path, capsys):
    # 8 train scenes, 8 a batch in each of 2 processes: 1 iteration an epoch
    out = run_demo('demo_segmentation.sh', tmp_path, 2, 'train_cfg.max_epochs=4')
    work = tmp_path / 'work'
    check_terminal_and_logs(out, work, 'demo-seg', 4)
    assert 'Distributed training: True' in (work / 'demo.log').read_text()
    assert (work / 'last_checkpoint').read_text().strip().endswith('epoch_4.pth')
    metrics = json.loads((work / 'test_metrics.json').read_text())['metrics']
    summary = check_summary(work, 'segmentation', 4)
    assert summary['value'] == metrics['mIoU']
    # the per-class IoU read back from mmseg's table: every class, and their mean is the mIoU
    ious = summary['class_iou']
    assert list(ious) == list(CLASSES), ious
    measured = [v for v in ious.values() if v is not None]
    assert measured and abs(sum(measured) / len(measured) - metrics['mIoU']) < 0.05, ious
    worst = summary['worst_class']
    assert worst['iou'] == min(measured) and ious[worst['name']] == worst['iou']
    assert summary['passed'] == (metrics['mIoU'] >= 70 and min(measured) >= 50
                                 and len(measured) == len(ious))
    assert f'val mIoU {metrics["mIoU"]:.1f}%, worst class {worst["name"]} ' in out
    assert re.search(r'per-class IoU background [\d.]+, ellipse ', out), out
    assert sorted(p.name for p in (work / 'overlays').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
    check_table(work, summary, f'mIoU {metrics["mIoU"]:.1f}%, worst {worst["name"]} ', capsys)


def test_summary_table_without_a_run(tmp_path, capsys):
    status, _, err = demo_summary('table', tmp_path / 'nowhere', capsys=capsys)
    assert 'summary.json does not exist: run the demo first' in error_line(status, err)


def test_a_failing_step_shows_its_error(tmp_path):
    """With the tools' output in demo.log, a failure must still reach the terminal."""
    result = start_demo('demo_detection.sh', tmp_path, 1,
                        'train_dataloader.dataset.ann_file=annotations/missing.json')
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    log = tmp_path / 'work' / 'demo.log'
    assert f'demo-det: training failed (exit status 1); the full output is in {log}' in \
        result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith('error: ')]
    assert len(errors) == 1 and 'missing.json' in errors[0], result.stderr
    assert 'Traceback' not in result.stdout + result.stderr
