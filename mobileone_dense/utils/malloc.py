"""Keep the memory a training step frees for the next step, instead of handing it back to the
operating system.

glibc's ``malloc`` serves a request above its mmap threshold with pages of its own ``mmap`` and
returns them on ``free``; the threshold starts at 128 KiB and rises to the largest block freed so
far. It also trims the top of its heap back to the system once more than twice that threshold
lies free there. A training step allocates and frees many activations and gradients of a few
MB, so much of that memory goes back to the system every step and comes back as new pages, each
of which the kernel zero-fills on its first touch. SSDLite-MobileOne-mu0's demo step (batch 8 at
256, bfloat16, one thread) took about 61,000 such page faults, some 240 MB of fresh pages, every
step; that is a fifth of the step on a virtual machine. :func:`retain_freed_memory` fixes the
mmap threshold at glibc's largest (32 MiB) and stops the trimming, so the step reuses its own
memory: no page faults after the first steps, and a process keeps its peak memory until it ends
(what PyTorch's caching allocator does on a GPU, and what jemalloc or tcmalloc do when preloaded).

The tools that train and evaluate call it once at start; a process whose malloc is already tuned
(``MALLOC_*_`` variables, ``GLIBC_TUNABLES``, a preloaded allocator) or that sets
``MOBILEONE_DENSE_MALLOC=system`` is left as it is.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Optional

# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on a 64-bit system
TRIM_THRESHOLD = 2 ** 31 - 1  # an int: never trim in practice
TOP_PAD = 64 * 1024 * 1024  # grow the heap in steps of 64 MiB: fewer brk calls
SETTINGS = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD))

OPT_OUT = 'MOBILEONE_DENSE_MALLOC'
PRELOADED = ('jemalloc', 'tcmalloc', 'mimalloc')


def _tuned_elsewhere(environ) -> Optional[str]:
    """Why this process's allocator is not ours to tune, or None."""
    if environ.get(OPT_OUT, '').lower() == 'system':
        return f'{OPT_OUT}=system'
    names = sorted(key for key in environ if key.startswith('MALLOC_') and key.endswith('_'))
    if names:
        return f'{names[0]} is set'
    if 'glibc.malloc.' in environ.get('GLIBC_TUNABLES', ''):
        return 'GLIBC_TUNABLES sets glibc.malloc'
    preload = environ.get('LD_PRELOAD', '')
    for name in PRELOADED:
        if name in preload:
            return f'{name} is preloaded'
    return None


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library, when it is glibc on Linux (musl and other systems have no such knobs)."""
    if platform.system() != 'Linux':
        return None
    try:
        if not os.confstr('CS_GNU_LIBC_VERSION'):
            return None
        return ctypes.CDLL('libc.so.6')
    except (ValueError, OSError, AttributeError):
        return None


def retain_freed_memory(environ=None) -> bool:
    """Make glibc's malloc keep freed memory for reuse (see the module's docstring).

    Call it once, early: it changes the whole process and the workers it forks later.

    Returns:
        True if the settings were applied; False on another C library or system, or when the
        environment tunes the allocator already.
    """
    if _tuned_elsewhere(os.environ if environ is None else environ):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
