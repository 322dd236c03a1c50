"""What every command-line tool shares: one entry that turns the errors a user can fix into one
sentence and exit status 1, and the argument parser. (The Runner's set-up for tools/train.py and
tools/test.py is :mod:`mobileone_dense.engine.runner`.)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional, Sequence

from ..errors import USER_ERRORS, EnvironmentBrokenError, UsageError

__all__ = ['UsageError', 'USER_ERRORS', 'run_tool', 'run_tool_and_exit', 'user_message',
           'check_file', 'tool_parser']


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

    """
    try:
        check_environment()
        status = main(argv)
    except USER_ERRORS as e:
        if os.environ.get('MOBILEONE_DENSE_TRACEBACK'):
            raise
        print(f'error: {user_message(e)}', file=sys.stderr, flush=True)
        return 1
    return status if isinstance(status, int) else 0


def run_tool_and_exit(main: Callable[[Optional[Sequence[str]]], object]) -> NoReturn:
    """A tool's ``if __name__ == '__main__'`` line: :func:`run_tool`, then exit with its status."""
    sys.exit(run_tool(main))


def check_file(path: str, what: str) -> None:
    """Raise :class:`UsageError` unless ``path`` is a local file or a URL."""
    if '://' not in str(path) and not Path(path).is_file():
        raise UsageError(f'{what} {path} does not exist: check the path.')


def tool_parser(doc: Optional[str]) -> argparse.ArgumentParser:
    """An argument parser whose help is the tool's docstring, as written."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
