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

import pytest
from helpers import ROOT, error_line, free_port, make_demo_data, tool_env

from mobileone_dense.utils import cli

CLASSES = ('background', 'ellipse', 'rectangle', 'triangle', 'star', 'cross')
# Every iteration logged unsmoothed and the lr at its peak from the start, so that a few
# iterations show the loss falling.
LOG_EACH_ITER = ('default_hooks.logger.interval=1 log_processor.window_size=1 '
                 'param_scheduler.0.start_factor=1')
PROGRESS = r'^{tag}: train (\d+)/(\d+) \[[#-]{{20}}\] loss (\S+)  ([\d.]+) s/it  ETA \d+:\d\d$'


def start_demo(script: str, tmp_path, procs: int, options: str) -> subprocess.CompletedProcess:
    data = make_demo_data(tmp_path / 'demo', test=4)
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


@pytest.mark.slow
def test_detection_demo_script(tmp_path, capsys):
    out = run_demo('demo_detection.sh', tmp_path, 1, 'train_cfg.max_iters=6')
    work = tmp_path / 'work'
    check_terminal_and_logs(out, work, 'demo-det', 6)
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_6.pth')
    metrics = json.loads((work / 'test_metrics.json').read_text())['metrics']
    summary = check_summary(work, 'detection', 6)
    assert summary['value'] == metrics['coco/bbox_mAP']
    assert summary['passed'] == (metrics['coco/bbox_mAP'] >= 0.5)
    assert f'test box mAP@[0.5:0.95] {metrics["coco/bbox_mAP"]:.3f} ' in out
    # the four test scenes of the tiny data set, drawn
    assert sorted(p.name for p in (work / 'pictures').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
    assert f'pictures {work / "pictures"}/ (4 PNGs)' in out
    check_table(work, summary, f'box mAP {metrics["coco/bbox_mAP"]:.3f}', capsys)


@pytest.mark.slow
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
    assert f'test mIoU {metrics["mIoU"]:.1f}%, worst class {worst["name"]} ' in out
    assert re.search(r'per-class IoU background [\d.]+, ellipse ', out), out
    assert sorted(p.name for p in (work / 'overlays').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
    check_table(work, summary, f'mIoU {metrics["mIoU"]:.1f}%, worst {worst["name"]} ', capsys)


def test_summary_table_without_a_run(tmp_path, capsys):
    status, _, err = demo_summary('table', tmp_path / 'nowhere', capsys=capsys)
    assert 'summary.json does not exist: run the demo first' in error_line(status, err)


@pytest.mark.slow
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


def fake_summary(work, demo: str, passed: bool, wall: float, rate: float) -> None:
    """A summary.json as tools/demo_summary.py write leaves it (the fields the table reads)."""
    work.mkdir(parents=True)
    summary = dict(demo=demo, metric='box mAP', value=0.52 if passed else 0.45,
                   target='box mAP >= 0.5', passed=passed, wall_time_s=wall, s_per_iter=rate,
                   pictures=str(work / 'pictures'))
    if demo == 'segmentation':
        summary.update(metric='mIoU', value=85.7, target='mIoU >= 70%, every class >= 50%',
                       worst_class=dict(name='star', iou=72.8))
    (work / 'summary.json').write_text(json.dumps(summary))


def test_summary_table_counts_the_runs_of_each_demo(tmp_path, capsys):
    runs = [('detection', True, 463.0, 0.72), ('detection', False, 480.4, 0.76),
            ('detection', True, 455.0, 0.74), ('segmentation', True, 378.0, 0.68)]
    works = [tmp_path / f'run_{i}' for i in range(len(runs))]
    for work, run in zip(works, runs):
        fake_summary(work, *run)
    status, out, err = demo_summary('table', '--time-limit', 480, *works, capsys=capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:8] == ['demo', 'metric', 'target', 'result', 'wall', 'time', '<=',
                                    '480']
    # 480.4 s shows as 480 s but is over the limit
    assert [ln.split('  ')[0].strip() for ln in lines[1:5]] == [r[0] for r in runs]
    assert [re.search(r' (yes|NO) ', ln)[1] for ln in lines[1:5]] == ['yes', 'NO', 'yes', 'yes']
    assert lines[5] == ('detection: target met in 2 of 3 runs, within 480 s in 2 of 3 '
                        '(wall time 455-480 s, 0.72-0.76 s/iteration)')
    assert lines[6] == ('segmentation: target met in 1 of 1 runs, within 480 s in 1 of 1 '
                        '(wall time 378 s, 0.68 s/iteration)')
    assert len(lines) == 7
    # without a limit: no time column, and a count only for a demo with several runs
    status, out, err = demo_summary('table', *works, capsys=capsys)
    assert status == 0 and '<=' not in out and ' NO ' not in out, out
    assert out.splitlines()[5:] == [
        'detection: target met in 2 of 3 runs (wall time 455-480 s, 0.72-0.76 s/iteration)']


def test_summary_table_refuses_a_time_limit_of_zero(tmp_path, capsys):
    fake_summary(tmp_path / 'run', 'detection', True, 400.0, 0.7)
    status, _, err = demo_summary('table', '--time-limit', 0, tmp_path / 'run', capsys=capsys)
    assert 'must be a number of seconds above 0' in error_line(status, err)


@pytest.mark.slow
def test_demo_runs_script(tmp_path):
    """scripts/demo_runs.sh 1 detection: one detection demo, then the table and its count."""
    data = make_demo_data(tmp_path / 'demo', test=4)
    env = dict(tool_env(), DEMO_DATA=str(data), DEMO_RUNS_DIR=str(tmp_path / 'runs'),
               DEMO_PROCS='1', DEMO_CFG_OPTIONS=f'train_cfg.max_iters=2 {LOG_EACH_ITER}',
               DEMO_TIME_LIMIT='3600', PORT=str(free_port()), PYTHON=sys.executable)
    env.pop('MOBILEONE_DENSE_PROGRESS', None)
    result = subprocess.run(['bash', str(ROOT / 'scripts/demo_runs.sh'), '1', 'detection'],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    out = result.stdout
    for i in (1, ):
        work = tmp_path / 'runs' / f'detection_{i}'
        assert f'== demo_runs: detection, run {i} of 1, into ' in out
        summary = json.loads((work / 'summary.json').read_text())
        assert summary['iterations'] == 2 and summary['demo'] == 'detection'
        assert f'{work / "pictures"}/' in out
    assert 'segmentation' not in out
    assert re.search(r'^detection: target met in [01] of 1 runs, within 3600 s in 1 of 1 '
                     r'\(wall time \d+(-\d+)? s, [\d.]+(-[\d.]+)? s/iteration\)$', out, re.M), out


def test_demo_runs_script_refuses_bad_arguments(tmp_path):
    for args, what in ((['0'], "not '0'"), (['2', 'dogs'], "'dogs' is not a demo")):
        result = subprocess.run(['bash', str(ROOT / 'scripts/demo_runs.sh'), *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and what in result.stderr, result.stderr
        assert result.stdout == '', result.stdout  # no demo started


def demo_precision(amp: str) -> list:
    """$precision, $precision_why, the --amp flag and demo_expect's sentence, as
    scripts/demo_lib.sh decides them with DEMO_AMP=amp."""
    script = ('source scripts/demo_lib.sh; demo_precision; printf "%s\\n" "$precision" '
              '"$precision_why" "${amp[*]:-}" "$(demo_expect 7-8 14-19)"')
    result = subprocess.run(['bash', '-c', script], cwd=ROOT, capture_output=True, text=True,
                            env=dict(tool_env(), DEMO_AMP=amp), timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_demo_precision_follows_demo_amp_and_the_cpu():
    assert demo_precision('0') == ['float32', 'asked', '',
                                   'float32 as DEMO_AMP=0 asks, up to 14-19 minutes on 2 cores']
    assert demo_precision('1') == ['bfloat16', '', '--amp',
                                   '7-8 minutes on 2 cores in bfloat16, by the hour']
    # auto: the script's look at /proc/cpuinfo must agree with what tools/train.py --amp checks
    from mobileone_dense.utils.cpu import bf16_instructions
    expected = demo_precision('1') if bf16_instructions() else [
        'float32', 'no-bf16', '',
        '14-19 minutes on 2 cores in float32: this CPU has no bfloat16 instructions']
    assert demo_precision('auto') == expected
