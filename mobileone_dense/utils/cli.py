"""What the command-line tools share: loading a config, turning the errors a user can fix into
one sentence, and the CPU side of distributed training.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..models.checkpoint import CheckpointMismatchError
from .data_check import DatasetNotFoundError


class UsageError(ValueError):
    """A bad command-line input (a file that is missing or unreadable, a wrong option)."""


# Errors a person fixes by changing an input (missing data or file, unreachable URL, a
# checkpoint of the wrong model): the tools print their one-sentence message, no traceback.
# Set MOBILEONE_DENSE_TRACEBACK=1 to see the traceback anyway.
USER_ERRORS = (UsageError, DatasetNotFoundError, CheckpointMismatchError, ConnectionError,
               FileNotFoundError)


def run_tool(main: Callable[[Optional[Sequence[str]]], object],
             argv: Optional[Sequence[str]] = None) -> int:
    """Run a tool's ``main``; a :data:`USER_ERRORS` error becomes ``error: <sentence>`` on
    stderr and exit status 1."""
    try:
        main(argv)
    except USER_ERRORS as e:
        if os.environ.get('MOBILEONE_DENSE_TRACEBACK'):
            raise
        print(f'error: {e}', file=sys.stderr, flush=True)
        return 1
    return 0


def load_config(path: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` with a clear error for a missing file; applies ``--cfg-options``."""
    from mmengine.config import Config
    if not Path(path).is_file():
        raise UsageError(f'Config file {path} does not exist: pass one of configs/**/*.py.')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def check_file(path: str, what: str) -> None:
    """Raise :class:`UsageError` unless ``path`` is a local file or a URL."""
    if '://' not in str(path) and not Path(path).is_file():
        raise UsageError(f'{what} {path} does not exist: check the path.')


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Let mmengine's Runner train data-parallel on CPUs (gloo), as it does on GPUs (nccl).

    mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device`` unconditionally and
    its Runner wraps the model in ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which
    torch refuses for CPU modules. Without CUDA we therefore open the gloo process group from
    torchrun's environment ourselves (the Runner then skips its own ``init_dist``) and ask for
    ``device_ids=None`` in ``model_wrapper_cfg``; the Runner still builds and drives DDP.

    Returns:
        Whether the CPU set-up was applied.
    """
    import torch
    import torch.distributed as dist
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise UsageError(f'--launcher {launcher} needs GPUs; on CPUs use --launcher pytorch '
                         f'(tools/dist_train.sh runs torchrun for you).')
    if 'RANK' not in os.environ:
        raise UsageError('--launcher pytorch expects the environment torchrun sets: start '
                         'training with tools/dist_train.sh CONFIG NUM_PROCESSES.')
    if not dist.is_initialized():
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
        kwargs = {}
        if timeout is not None:
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        dist.init_process_group(backend='gloo', **kwargs)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


def close_distributed() -> None:
    """Close the default process group and join its gloo worker threads while Python still runs.

    Call it once the Runner is done and no longer referenced (``del runner``): the DDP wrapper
    holds the process group, and gloo's worker threads live as long as it does. Left to
    interpreter shutdown, a worker that releases a finished collective (the last
    ``broadcast_object_list`` of the evaluation) needs the GIL while Python finalizes, and
    the process aborts with ``terminate called without an active exception`` although
    training finished (a few runs in a hundred).
    """
    import gc

    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.destroy_process_group()
    gc.collect()  # the Runner's reference cycles hold the DDP wrapper, hence the group
