"""The suite's fixtures; the helpers every test module may import live in helpers.py."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import LogCapture, TinyExports  # noqa: E402


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
def tiny_exports(tmp_path_factory):
    """The tiny detector and segmentor, exported once per session (helpers.TinyExports)."""
    return TinyExports(tmp_path_factory.mktemp('tiny_exports'))
