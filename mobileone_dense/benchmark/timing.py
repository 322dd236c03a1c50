"""The one interleaved timing loop, so that figures survive a shared, noisy machine.

Candidates are timed *side by side*: every round runs each of them in a rotating order, so a
burst of load from elsewhere hits all of them alike, and the figures are medians over rounds.
Within a round each candidate first runs untimed settling calls: thread pools outlive the call
that woke them (PyTorch's OpenMP workers and ONNX Runtime's shared pool keep spinning for a
while), and the first call after a switch would be charged for the previous candidate's
threads. Then it runs ``calls`` timed calls, whose median is its time in that round, so that
one hiccup of the machine does not become the round's figure.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from typing import Callable, Mapping, Union

import torch

PerCandidate = Union[int, Mapping[str, int]]


def time_side_by_side(fns: Mapping[str, Callable[[], object]], rounds: int = 20,
                      warmup: int = 3, settle: PerCandidate = 1, calls: PerCandidate = 1,
                      inference: bool = True, progress: bool = True) -> dict[str, dict]:
    """Median, min and interquartile spread (ms) of each callable, measured interleaved, and
    its time in each round (``rounds_ms``), to pair candidates round by round.

    Args:
        fns: Name -> zero-argument callable (one forward pass, or one training step).
        rounds: Timed rounds.
        warmup: Untimed calls of each callable first.
        settle: Untimed calls of a candidate right before its timed ones in each round (a
            mapping gives each candidate its own count).
        calls: Timed calls of a candidate in each round (likewise).
        inference: Run under ``torch.inference_mode``; False for training steps.
        progress: Print a progress line every tenth round.
    """
    names = list(fns)
    settles = settle if isinstance(settle, Mapping) else dict.fromkeys(names, settle)
    counts = calls if isinstance(calls, Mapping) else dict.fromkeys(names, calls)
    if min(counts.values(), default=1) < 1:
        raise ValueError(f'each candidate needs at least one timed call a round, got {counts}')
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode() if inference else contextlib.nullcontext():
        for _ in range(warmup):
            for n in names:
                fns[n]()
        for r in range(rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                for _ in range(settles[n]):
                    fns[n]()
                once = []
                for _ in range(counts[n]):
                    start = time.perf_counter()
                    fns[n]()
                    once.append((time.perf_counter() - start) * 1e3)
                times[n].append(statistics.median(once))
            if progress and (r + 1) % max(1, rounds // 10) == 0:
                print(f'  round {r + 1}/{rounds}', end='\r', flush=True)
    if progress:
        print(' ' * 30, end='\r')
    return {n: _summary(t) for n, t in times.items()}


def settle_by_time(fns: Mapping[str, Callable[[], object]], ms: float, minimum: int = 1,
                   cap: int = 200) -> dict[str, int]:
    """Settling calls per candidate that last at least ``ms`` milliseconds (and at least
    ``minimum``, at most ``cap`` calls): a pool that spins for a fixed time after its last
    run needs a fixed time, not a fixed count, to calm down. Each candidate's call time is read
    here from the faster of two calls after an untimed one."""
    counts = {}
    with torch.inference_mode():
        for name, fn in fns.items():
            fn()
            once = []
            for _ in range(2):
                start = time.perf_counter()
                fn()
                once.append((time.perf_counter() - start) * 1e3)
            counts[name] = max(minimum, min(cap, math.ceil(ms / max(min(once), 1e-3))))
    return counts


def _summary(times_ms: list[float]) -> dict:
    q = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else [times_ms[0]] * 3
    return dict(median_ms=statistics.median(times_ms), min_ms=min(times_ms),
                iqr_ms=q[2] - q[0], rounds_ms=times_ms)
