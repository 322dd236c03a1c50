"""Both halves of `make demo`, run as the user runs them (scripts/demo_detection.sh and
scripts/demo_segmentation.sh), on tiny generated data with a few iterations: training (in two
CPU processes for the segmentation demo: BN, not SyncBN), tools/test.py's metrics, the pictures
of tools/image_demo.py and the summary the script prints."""
import json
import re
import subprocess
import sys

from tools_helpers import ROOT, free_port, make_demo_data, tool_env

CLASSES = ('background', 'ellipse', 'rectangle', 'triangle', 'star', 'cross')


def run_demo(script: str, tmp_path, procs: int, options: str) -> str:
    data = make_demo_data(tmp_path / 'demo')
    env = dict(tool_env(), DEMO_DATA=str(data), WORK_DIR=str(tmp_path / 'work'),
               DEMO_PROCS=str(procs), DEMO_CFG_OPTIONS=options, PORT=str(free_port()),
               PYTHON=sys.executable)
    result = subprocess.run(['bash', str(ROOT / 'scripts' / script)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def test_detection_demo_script(tmp_path):
    log = run_demo('demo_detection.sh', tmp_path, 1, 'train_cfg.max_iters=3')
    assert 'Saving checkpoint at 3 iterations' in log
    work = tmp_path / 'work'
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')
    metrics = json.loads((work / 'test_metrics.json').read_text())['metrics']
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    summary = re.search(r'val box mAP@\[0\.5:0\.95\] ([\d.]+) ', log)
    assert summary and float(summary[1]) == round(metrics['coco/bbox_mAP'], 3), log[-2000:]
    # the four val scenes of the tiny data set, drawn
    assert sorted(p.name for p in (work / 'pictures').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
    assert 'pictures' in log and 'on 4 val scenes' in log
    assert re.search(r'wall time \d+ s \(training \d+ s\)', log)


def test_segmentation_demo_script(tmp_path):
    log = run_demo('demo_segmentation.sh', tmp_path, 2, 'train_cfg.max_epochs=1')
    assert 'Distributed training: True' in log and 'Epoch(train) [1]' in log
    work = tmp_path / 'work'
    assert (work / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert 'per class results' in log
    for c in CLASSES:  # a row of the per-class IoU table
        assert re.search(rf'\|\s+{c}\s+\|\s+([\d.]+|nan)\s+\|', log), (c, log[-3000:])
    metrics = json.loads((work / 'test_metrics.json').read_text())['metrics']
    assert 0 <= metrics['mIoU'] <= 100 and 0 <= metrics['aAcc'] <= 100
    assert f'val mIoU {metrics["mIoU"]:.1f}%' in log
    assert sorted(p.name for p in (work / 'overlays').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
    assert 'mask overlays of 4 val scenes' in log
