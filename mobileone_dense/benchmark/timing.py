"""The one interleaved timing loop: latency (and training steps) that survive a shared, noisy
machine.

Models are timed *side by side*: every round runs each candidate in a rotating order, so a
burst of load from elsewhere hits all of them alike; we report the median of the rounds.

Within a round, each candidate runs ``settle`` untimed calls right before its timed one. Thread
pools outlive the call that woke them: PyTorch's OpenMP workers and ONNX Runtime's spinning
workers keep two cores busy for a while after they return, and a pool that has gone to sleep
takes time to wake. Timing the first call after a switch charged one runtime for the other's
threads (on 2 cores, fused MobileOne-S1 read 29-33 ms in PyTorch and 7.0-8.7 ms in ONNX Runtime
when interleaved call by call, against 12-14 ms and 5.2 ms when each ran alone); one settling call
brings the interleaved figures back to the steady state a deployed model sees.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from typing import Callable, Mapping

import torch


def time_side_by_side(fns: Mapping[str, Callable[[], object]], rounds: int = 50,
                      warmup: int = 5, settle: int | Mapping[str, int] = 1,
                      progress: bool = True, inference: bool = True,
                      calls: int | Mapping[str, int] = 1) -> dict[str, dict]:
    """Median, min and interquartile spread (ms) of each callable, measured interleaved, and
    its time in each round (``rounds_ms``), to pair candidates round by round.

    Args:
        fns: Name -> zero-argument callable (one forward pass, or one training step).
        rounds: Timed runs of each callable.
        warmup: Untimed runs of each callable first.
        settle: Untimed calls of a candidate right before each of its timed calls, so that it
            is timed in its own steady state, not while the previous candidate's thread pool
            still holds the cores (see the module docstring). 0 times the first call. A
            mapping gives each candidate its own count.
        progress: Print a progress line every tenth round.
        inference: Run under ``torch.inference_mode``; False for training steps, which need
            autograd (they run in the caller's grad mode).
        calls: Timed calls of a candidate in each round, one after another after its settling
            calls; the median of them is its time in that round. One timed call of a few
            milliseconds catches any hiccup of a shared machine whole: LiteRT INT8
            SSDLite-S0 read 4.3-9.4 ms over 30 rounds of one call. A mapping gives each
            candidate its own count.
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
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
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
    """Settling calls per candidate (``settle`` of :func:`time_side_by_side`) that last at
    least ``ms`` milliseconds, and at least ``minimum`` calls (at most ``cap``).

    A count of calls is not enough when a thread pool keeps spinning for a fixed time: ONNX
    Runtime's shared pool spins for about 40 ms after each run, and a LiteRT (XNNPACK) model
    of 4.5 ms timed after three settling calls read 9.2 ms. Each candidate's latency is read
    here from two calls (the faster counts) after one untimed call.
    """
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
