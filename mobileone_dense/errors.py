"""Every error a person fixes by changing an input: each one prints as one sentence with the fix.

This module is the ground floor of the package and imports nothing from it, so any layer
(models, data checks, export, tools) can raise these without import cycles. The tools turn a
:data:`USER_ERRORS` error into ``error: <sentence>`` and exit status 1
(:func:`mobileone_dense.utils.cli.run_tool`); set ``MOBILEONE_DENSE_TRACEBACK=1`` to see the
traceback anyway.
"""
from __future__ import annotations


class UserError(Exception):
    """Base of the errors whose message is one sentence naming the problem and the fix."""

    def __str__(self) -> str:  # FileNotFoundError would print its errno tuple
        return str(self.args[0]) if self.args else ''


class UsageError(UserError, ValueError):
    """A bad command-line input: a missing or unreadable file, a wrong option."""


class ConfigError(UserError, ValueError):
    """A config that cannot be read or that asks for something this toolkit cannot build."""


class UnknownArchError(UserError, ValueError):
    """A MobileOne variant name or arch dict that does not exist."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset file or folder named by a config is missing."""


class DatasetReadError(UserError, ValueError):
    """A dataset file exists but cannot be read (a corrupt annotation file or image)."""


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint does not fit the model it is loaded into, or is not a complete checkpoint."""


class ExportError(UserError, ValueError):
    """A model cannot be exported, or its export disagrees with PyTorch."""


class EnvironmentBrokenError(UserError, RuntimeError):
    """The installed packages cannot run the tools (e.g. setuptools without pkg_resources)."""


#: What the tools print as one sentence. ``ConnectionError`` covers an unreachable pretrained URL
#: and ``FileNotFoundError`` a file mmengine looked for itself.
USER_ERRORS = (UserError, ConnectionError, FileNotFoundError)
