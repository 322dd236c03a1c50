"""What the command-line tools share: one entry that turns the errors a user can fix into one
sentence and exit status 1, and the CPU side of distributed training.
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional, Sequence

from ..errors import USER_ERRORS, EnvironmentBrokenError, UsageError

__all__ = ['UsageError', 'USER_ERRORS', 'run_tool', 'run_tool_and_exit', 'user_message',
           'check_file', 'tool_parser', 'add_runner_arguments', 'runner_config',
           'setup_cpu_distributed', 'stop_dataloader_workers', 'close_distributed']


def check_environment() -> None:
    """Raise :class:`EnvironmentBrokenError` if an installed package the tools need is broken.

    mmengine 0.10.7 imports ``pkg_resources`` to find the configs inside mmdet and mmseg (every
    config here has an ``mmdet::``/``mmseg::`` base); setuptools 82 removed it, and a ``pip
    install`` of another package can upgrade setuptools in the project's environment. ``make
    install`` would not notice (its check imports the packages, which works without it).
    """
    import importlib.util
    if importlib.util.find_spec('pkg_resources') is None:
        raise EnvironmentBrokenError(
            f'setuptools in this Python environment has no pkg_resources module, which mmengine '
            f'needs to read the configs (setuptools 82 removed it; a pip install of another '
            f'package probably upgraded it): run `{sys.executable} -m pip install '
            f'"setuptools<70"`, the version make install pins.')


def user_message(error: BaseException) -> str:
    """The sentence of a :data:`USER_ERRORS` error, also when torch re-raised it from a
    dataloader worker (``Caught DatasetReadError in DataLoader worker process 0.``, then the
    worker's traceback, then the error's own line)."""
    text = str(error)
    if text.startswith('Caught ') and '\nOriginal Traceback' in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(f'{type(error).__name__}: ', 1)[-1]
    return text


def run_tool(main: Callable[[Optional[Sequence[str]]], object],
             argv: Optional[Sequence[str]] = None) -> int:
    """Run a tool's ``main`` after :func:`check_environment`; a :data:`USER_ERRORS` error becomes
    ``error: <sentence>`` on stderr and exit status 1.

    mmengine's loggers made during the call are closed and forgotten when it returns: mmengine
    names a run's logger by the second it started, so a second tool run in the same process
    (a test, a notebook) within that second would get the first run's logger back, still
    writing to the first run's (possibly closed) streams.
    """
    before = _logger_names()
    try:
        check_environment()
        status = main(argv)
    except USER_ERRORS as e:
        if os.environ.get('MOBILEONE_DENSE_TRACEBACK'):
            raise
        print(f'error: {user_message(e)}', file=sys.stderr, flush=True)
        return 1
    finally:
        _forget_loggers(before)
    return status if isinstance(status, int) else 0


def run_tool_and_exit(main: Callable[[Optional[Sequence[str]]], object]) -> NoReturn:
    """A tool's ``if __name__ == '__main__'`` line: :func:`run_tool`, then exit with its status.

    Before exiting it collects the garbage once (so the finalizers of whatever the tool
    dropped run) and freezes what is still alive (:func:`gc.freeze`): at exit CPython runs
    several full collections over every live object, and with torch, mmdet and mmseg imported
    they took 3.2 s of every tool's exit on a 2-core AMD EPYC, 0.5 s once frozen. Exit
    handlers and module teardown still run as usual. Not for a process that goes on (a test
    calls :func:`run_tool`), which would keep its frozen objects out of the collector.
    """
    status = run_tool(main)
    import gc
    gc.collect()
    gc.freeze()
    sys.exit(status)


def _logger_names() -> set:
    if 'mmengine.logging' not in sys.modules:
        return set()
    from mmengine.logging import MMLogger
    return set(MMLogger._instance_dict)


def _forget_loggers(before: set) -> None:
    if 'mmengine.logging' not in sys.modules:
        return
    from mmengine.logging import MMLogger
    for name in set(MMLogger._instance_dict) - before:
        logger = MMLogger._instance_dict.pop(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            if not isinstance(handler, logging.StreamHandler) or \
                    isinstance(handler, logging.FileHandler):
                handler.close()  # files; a console stream is not ours to close


def check_file(path: str, what: str) -> None:
    """Raise :class:`UsageError` unless ``path`` is a local file or a URL."""
    if '://' not in str(path) and not Path(path).is_file():
        raise UsageError(f'{what} {path} does not exist: check the path.')


def tool_parser(doc: Optional[str]) -> argparse.ArgumentParser:
    """An argument parser whose help is the tool's docstring, as written."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_runner_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The options of the tools that run mmengine's Runner: ``--work-dir``,
    ``--cfg-options`` (``example`` shows one), ``--launcher`` and torchrun's ``--local-rank``."""
    from mmengine.config import DictAction
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
    from ..apis import load_config
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
    import gc

    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.destroy_process_group()
    gc.collect()  # the Runner's reference cycles hold the DDP wrapper, hence the group
