"""The segmentation half of the demo on tiny generated data: configs/deeplabv3/
mobileone_mu0_demo.py trains in two CPU processes (BN, not SyncBN), tools/test.py reports mIoU
with per-class IoU, and tools/image_demo.py draws mask overlays."""
import json
import re
import subprocess
import sys

from tools_helpers import ROOT, free_port, make_demo_data, run_tool, tool_env

CONFIG = ROOT / 'configs/deeplabv3/mobileone_mu0_demo.py'
CLASSES = ('background', 'ellipse', 'rectangle', 'triangle', 'star', 'cross')



def test_segmentation_demo_trains_evaluates_and_draws(tmp_path):
    data = make_demo_data(tmp_path / 'demo')
    options = ['--cfg-options', 'train_cfg.max_epochs=1',
               *(f'{loader}.dataset.data_root={data}'
                 for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'))]
    work = tmp_path / 'work'
    env = dict(tool_env(), PORT=str(free_port()), PYTHON=sys.executable)
    result = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(CONFIG), '2',
                             '--work-dir', str(work), *options], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'Epoch(train) [1]' in log
    checkpoint = (work / 'last_checkpoint').read_text().strip()
    assert checkpoint.endswith('epoch_1.pth')

    result = run_tool(ROOT / 'tools/test.py', CONFIG, checkpoint, '--work-dir', tmp_path / 'test',
                      *options, timeout=180)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert 'per class results' in out
    for c in CLASSES:  # a row of the per-class IoU table
        assert re.search(rf'\|\s+{c}\s+\|\s+([\d.]+|nan)\s+\|', out), (c, out[-3000:])
    metrics = json.loads((tmp_path / 'test' / 'test_metrics.json').read_text())['metrics']
    assert 0 <= metrics['mIoU'] <= 100 and 0 <= metrics['aAcc'] <= 100

    result = run_tool(ROOT / 'tools/image_demo.py', data / 'images' / 'val', CONFIG, checkpoint,
                      '--out-dir', tmp_path / 'overlays', timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'overlays').glob('*.png')) == [
        f'{i:06d}.png' for i in range(4)]
