"""mmengine's Runner as tools/train.py and tools/test.py set it up: their shared options, the
config they run, and the CPU side of distributed training (gloo), with its clean shutdown."""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import DictAction

from ..apis import load_config
from ..errors import UsageError


def add_runner_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The options of the tools that run mmengine's Runner: ``--work-dir``,
    ``--cfg-options`` (``example`` shows one), ``--launcher`` and torchrun's ``--local-rank``."""
    parser.add_argument('--work-dir', help='where checkpoints, logs and metrics go (default: '
                                           'work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help=f'override config entries, e.g. {example}')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher (tools/dist_train.sh uses pytorch)')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def runner_config(args: argparse.Namespace):
    """The config of ``args.config`` with ``--cfg-options``, the launcher and the work dir
    (``--work-dir``, else the config's, else ``work_dirs/<config name>``) applied."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


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
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        dist.init_process_group(backend='gloo', **kwargs)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


def stop_dataloader_workers(runner) -> int:
    """Stop the worker processes of ``runner``'s data loaders now, while the runner holds them.

    Call it when ``runner.train()`` or ``runner.test()`` has returned, before ``del runner``.
    Left to the garbage collector, a loader's iterator is freed in one reference cycle with the
    Runner, and the collector clears that cycle's weak references before it calls ``__del__``:
    the finalizer of each worker's ``multiprocessing`` index queue stops the thread that sends
    to it, so the iterator's ``__del__`` then queues the workers' stop signal where nothing
    sends it, waits torch's ``MP_STATUS_CHECK_INTERVAL`` (5 s) for each worker, and kills it.
    Stopping them here takes a fraction of a second. Loops that were never built (still config
    dicts) are skipped.

    Returns:
        How many iterators with worker processes were stopped.
    """
    iterators = []
    for name in ('_train_loop', '_val_loop', '_test_loop'):
        loop = getattr(runner, name, None)  # the properties would build a loop not built yet
        loader = getattr(loop, 'dataloader', None)
        # A DataLoader with persistent workers keeps its iterator; mmengine's iteration-based
        # loop keeps an endless wrapper around one.
        iterators.append(getattr(loader, '_iterator', None))
        iterators.append(getattr(getattr(loop, 'dataloader_iterator', None), '_iterator', None))
    stopped = set()
    for iterator in iterators:
        shutdown = getattr(iterator, '_shutdown_workers', None)
        if shutdown is not None and id(iterator) not in stopped:
            shutdown()
            stopped.add(id(iterator))
    return len(stopped)


def close_distributed() -> None:
    """Close the default process group and join its gloo worker threads while Python still runs.

    Call it once the Runner is done and no longer referenced (``del runner``): the DDP wrapper
    holds the process group, and gloo's worker threads live as long as it does. Left to
    interpreter shutdown, a worker that releases a finished collective (the last
    ``broadcast_object_list`` of the evaluation) needs the GIL while Python finalizes, and
    the process aborts with ``terminate called without an active exception`` although
    training finished (a few runs in a hundred).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.destroy_process_group()
    gc.collect()  # the Runner's reference cycles hold the DDP wrapper, hence the group
