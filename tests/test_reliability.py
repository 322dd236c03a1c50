"""Training survives a SIGKILL (resume from the last checkpoint) and runs data-parallel on CPU
(two processes, gloo), through tools/train.py and tools/dist_train.sh on tiny demo data."""
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from helpers import ROOT, free_port, make_demo_data, run_tool, tool_env, write_tiny_config

from mobileone_dense.engine.runner import close_distributed
from mobileone_dense.utils.safe_load import mmengine_checkpoints

TRAIN = ROOT / 'tools' / 'train.py'


def _iterations(log: str, total: int) -> list[int]:
    return [int(n) for n in re.findall(rf'Iter\(train\) \[\s*(\d+)/{total}\]', log)]


def _load(path) -> dict:
    with mmengine_checkpoints():
        return torch.load(path, map_location='cpu', weights_only=True)


def _checkpoint_iter(path) -> int:
    return _load(path)['meta']['iter']


KILLER = """
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIteration(Hook):
    \"\"\"SIGKILL this process right after iteration ``iteration`` (and its checkpoint).\"\"\"
    priority = 'LOWEST'  # after CheckpointHook has written the iteration's checkpoint

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_sigkill_then_resume_loses_at_most_one_interval(tmp_path):
    """Training killed by SIGKILL one iteration after a checkpoint (a hook kills the process,
    so nothing here waits on the clock) resumes from that checkpoint and finishes."""
    total, interval, killed_at = 8, 3, 4
    config = write_tiny_config(tmp_path / 'tiny.py', make_demo_data(tmp_path / 'demo'),
                               iters=total, interval=interval)
    (tmp_path / 'kill_at.py').write_text(KILLER)
    doomed = tmp_path / 'doomed.py'
    doomed.write_text(f"_base_ = './tiny.py'\n"
                      f"custom_imports = dict(imports=['kill_at'], allow_failed_imports=False)\n"
                      f"custom_hooks = [dict(type='KillAtIteration', iteration={killed_at})]\n")
    work = tmp_path / 'work'
    env = dict(tool_env(), PYTHONPATH=str(tmp_path))
    killed = subprocess.run([sys.executable, str(TRAIN), str(doomed), '--work-dir', str(work)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    assert max(_iterations(killed.stdout + killed.stderr, total)) == killed_at
    saved = killed_at // interval * interval
    assert (work / 'last_checkpoint').read_text().strip().endswith(f'iter_{saved}.pth')

    resumed = run_tool(TRAIN, config, '--work-dir', work, '--resume', timeout=300)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert f'resumed epoch: 0, iter: {saved}' in log
    done = _iterations(log, total)
    assert done[0] == saved + 1 and done[-1] == total
    assert _checkpoint_iter(work / f'iter_{total}.pth') == total
    assert (work / 'last_checkpoint').read_text().strip().endswith(f'iter_{total}.pth')


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    config = write_tiny_config(tmp_path / 'tiny.py', make_demo_data(tmp_path / 'demo'),
                               iters=4, interval=4)
    work = tmp_path / 'work'
    env = dict(tool_env(), PORT=str(free_port()), PYTHON=sys.executable)
    result = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(config), '2',
                             '--work-dir', str(work)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=180)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'Distributed training is not used' not in log
    assert _iterations(log, 4)[-1] == 4
    checkpoint = _load(work / 'iter_4.pth')
    assert checkpoint['meta']['iter'] == 4
    # the model was saved unwrapped (no DDP 'module.' prefix), so tools/test.py can read it
    assert not any(k.startswith('module.') for k in checkpoint['state_dict'])


def _threads() -> set:
    return set(os.listdir('/proc/self/task'))


def test_close_distributed_joins_gloo_threads_before_exit(tmp_path):
    # tools/train.py and tools/test.py call it once the Runner is gone. Left to interpreter
    # shutdown, a gloo worker releasing the evaluation's last broadcast needs the GIL while
    # Python finalizes, and a finished worker aborts (SIGABRT) a few runs in a hundred.
    model = torch.nn.Linear(3, 3)
    model(torch.ones(2, 3)).sum().backward()  # torch's own threads start here, not below
    before = _threads()
    dist.init_process_group('gloo', store=dist.FileStore(str(tmp_path / 'store'), 1),
                            rank=0, world_size=1)
    try:
        runner = {'model': torch.nn.parallel.DistributedDataParallel(model)}
        runner['self'] = runner  # a Runner, too, sits in reference cycles
        runner['model'](torch.ones(2, 3)).sum().backward()
        dist.broadcast_object_list([{'mAP': 0.5}])
        assert _threads() - before, 'gloo started no worker thread: the check below is void'
        del runner  # as the tools do: its DDP wrapper holds the process group
        close_distributed()
        assert not dist.is_initialized()
        assert not _threads() - before, 'gloo worker threads outlive close_distributed'
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    close_distributed()  # nothing open: a no-op
