"""The suite's fixtures; the helpers every test module may import live in helpers.py."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import DemoExports, LogCapture  # noqa: E402


@pytest.fixture
def mmengine_log():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    handler = LogCapture()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def demo_exports(tmp_path_factory, worker_id):
    """The demo detector and segmentor, exported once per test run (helpers.DemoExports): in
    the folder all pytest-xdist workers of the run share, or this session's own."""
    base = tmp_path_factory.getbasetemp()
    return DemoExports((base.parent if worker_id != 'master' else base) / 'demo_exports')


@pytest.fixture(scope='session', autouse=True)
def _one_torch_thread_per_xdist_worker(worker_id):
    """``make test`` runs two pytest-xdist workers on two cores: each runs torch on one thread,
    or their OpenMP threads spin against each other over the same cores."""
    if worker_id != 'master':
        torch.set_num_threads(1)
