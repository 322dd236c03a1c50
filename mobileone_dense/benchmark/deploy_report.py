"""The deploy benchmark's figures: a row of latencies and per-round ratios per model and part,
the table, the headline comparison and the warnings of the agreement checks.
"""
from __future__ import annotations

import statistics

from .common import format_table
from .deploy_models import RUNTIME_LABELS, RUNTIMES, Model
from .export import paired_median

NETWORK, END_TO_END = 'network', 'end to end'


def model_rows(group: str, models: list[Model], result: dict, stat: str) -> list[dict]:
    """One row per model and part (``network``; ``end to end`` for detectors): latencies per
    runtime and the ratios, each the median over rounds of the ratio within a round."""
    peer = next((m for m in models if m.peer), None)
    rows = []
    for model in models:
        parts = [(NETWORK, '')] + ([(END_TO_END, ' e2e')] if model.postprocess else [])
        for part, suffix in parts:
            rounds = {r: result[f'{model.name} {r}{suffix}']['rounds_ms'] for r in RUNTIMES}
            row = dict(group=group, model=model.name, size=model.size, part=part,
                       peer=model.peer, params_m=model.params / 1e6,
                       ms={r: result[f'{model.name} {r}{suffix}'][f'{stat}_ms']
                           for r in RUNTIMES},
                       median_ms={r: statistics.median(t) for r, t in rounds.items()},
                       min_ms={r: min(t) for r, t in rounds.items()},
                       int8_speedup=paired_median(lambda f, q: f / q, rounds['litert'],
                                                  rounds['litert_int8']),
                       litert_over_onnx=paired_median(lambda t, o: t / o, rounds['litert'],
                                                      rounds['onnx']))
            if peer is not None and not model.peer:
                peer_rounds = {r: result[f'{peer.name} {r}{suffix}']['rounds_ms']
                               for r in RUNTIMES}
                row['over_peer'] = {r: paired_median(lambda m, p: m / p, rounds[r],
                                                     peer_rounds[r]) for r in RUNTIMES}
            rows.append(row)
    return rows


def table(rows: list[dict], stat: str) -> str:
    header = ['model', 'input', 'part'] + [
        f'{RUNTIME_LABELS[r]} ms' + (f' ({stat})' if i == 0 else '')
        for i, r in enumerate(RUNTIMES)] + [
        'INT8 speedup (LiteRT FP32/INT8)', 'LiteRT FP32 / ORT FP32', 'INT8 / MNV2 INT8']
    lines = []
    for r in rows:
        name = r['model'] if r['group'] == 'backbone' else f'{r["group"]} {r["model"]}'
        over = r.get('over_peer', {}).get('litert_int8')
        lines.append([name, r['size'], r['part'], *(r['ms'][k] for k in RUNTIMES),
                      r['int8_speedup'], r['litert_over_onnx'],
                      '-' if over is None else over])
    return format_table(header, lines)


def headlines(rows: list[dict]) -> list[str]:
    """The comparison the deployment is judged by: SSDLite-MobileOne-S0 against
    SSDLite-MobileNetV2, both INT8 in LiteRT, network and end to end."""
    pick = {r['part']: r['over_peer']['litert_int8'] for r in rows
            if r['group'] == 'ssdlite' and r['model'] == 'MobileOne-S0' and 'over_peer' in r}
    if not pick:
        return []
    parts = ', '.join(f'{part} {ratio:.2f}x' for part, ratio in pick.items())
    return [f'SSDLite-MobileOne-S0 INT8 / SSDLite-MobileNetV2 INT8 in LiteRT (time ratio, '
            f'median of per-round ratios): {parts}']


def agreement_notes(checks: dict[str, dict]) -> list[str]:
    """A line per FP32 conversion whose outputs stray from PyTorch's beyond float tolerance."""
    lines = []
    for name, report in checks.items():
        for runtime in ('onnx', 'litert'):
            if not report[runtime]['ok']:
                lines.append(f'WARNING: {RUNTIME_LABELS[runtime]} of {name} differs from '
                             f'PyTorch (max rel diff {report[runtime]["max_rel"]:.1e}): a stale '
                             f'cached file? rerun with --reconvert.')
    return lines


def int8_note(machine: dict) -> list[str]:
    """A line when the INT8 columns were timed on a CPU without int8 dot-product instructions
    (``machine``: :func:`~mobileone_dense.benchmark.common.machine_info`). XNNPACK's INT8
    kernels then multiply in 16-bit lanes and gain little over FP32, unlike on a phone's Arm
    cores (dotprod) or an x86 CPU with VNNI."""
    if machine.get('int8_dot'):
        return []
    return [f'note: this CPU ({machine.get("cpu_name") or machine.get("cpu")}) has no int8 '
            'dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8 on x86; dotprod on '
            "Arm, which phones' cores have), so XNNPACK's INT8 kernels gain little over FP32 "
            'on it: its INT8 speedups are not those of a phone (docs/benchmarks.md)']
