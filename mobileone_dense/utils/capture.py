"""Keep a converter's console chatter (Python prints, rich consoles and C++ logging alike) out of
the terminal, and keep it for the error message when the conversion fails; and quiet the
loggers of a third-party import for its duration."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile


class Captured:
    """What was written to the terminal inside :func:`captured_output`."""

    def __init__(self) -> None:
        self.text = ''

    def tail(self, lines: int = 15) -> str:
        return '\n'.join(self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def captured_output():
    """Redirect file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``) to a file for the
    duration; yields a :class:`Captured` whose ``text`` holds it afterwards."""
    captured = Captured()
    with tempfile.TemporaryFile(mode='w+b') as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with open(os.dup(sink.fileno()), 'w', closefd=True) as stream, \
                    contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.text = sink.read().decode(errors='replace')


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR):
    """Raise the loggers ``names`` to ``level`` for the duration, then give them back their
    own levels."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, levels):
            lg.setLevel(old)
