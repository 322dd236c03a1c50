"""The results of `make demo`: each demo's summary.json, and the table that ends the demo.

    python tools/demo_summary.py write WORK_DIR --demo detection|segmentation --started T
                                 --train-time S --pictures DIR [--log FILE] [--tag TAG]
    python tools/demo_summary.py table [WORK_DIR_OR_SUMMARY_JSON ...] [--time-limit S]
    python tools/demo_summary.py formats DEPLOY_DIR ...

``write`` (run by scripts/demo_detection.sh and scripts/demo_segmentation.sh) reads the demo's
``test_metrics.json`` (tools/test.py), its training log (``<timestamp>/vis_data/scalars.json``:
iterations, s/iteration, first and last logged loss) and, for segmentation, the per-class IoU
table tools/test.py logged to ``--log``; it writes ``WORK_DIR/summary.json`` and prints the
demo's result lines. ``table`` prints one row per summary (default: the two demos' work dirs):
demo, metric, target, pass or FAIL, wall time, s/iteration and where the pictures are; with
``--time-limit S``, whether each run took at most S seconds. Where a demo has several runs
(scripts/demo_runs.sh), a line per demo then counts them: in how many the target was met, in
how many the time limit held, the range of wall times and of s/iteration. The wall time runs
from ``--started`` (the demo's start, in seconds since the epoch) to the writing of the
summary, so it holds this tool's own start-up too.
``formats`` (run by scripts/deploy_accuracy.sh) prints one row per format of each exported
demo model: the metric tools/test.py wrote to ``DEPLOY_DIR/test_<format>/test_metrics.json``.
Targets: box mAP >= 0.5; mIoU >= 70% with no class below 50% IoU, on the held-out test split.
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Optional

if 'mobileone_dense' not in sys.modules:
    # Summing up a demo needs none of the models: stand the package up without running its
    # __init__, which imports torch, mmdet and mmseg to register the models (6-12 s a start).
    sys.modules['mobileone_dense'] = importlib.util.module_from_spec(
        importlib.util.find_spec('mobileone_dense'))

from mobileone_dense.utils import cli  # noqa: E402
from mobileone_dense.utils.logs import find_log, read_log  # noqa: E402

DEFAULT_DIRS = ('work_dirs/demo_detection', 'work_dirs/demo_segmentation')
DET_TARGET, MIOU_TARGET, CLASS_TARGET = 0.5, 70.0, 50.0
# A row of mmseg's per-class table: | star | 82.1 | 90.3 |
CLASS_ROW = re.compile(r'^\|\s*(\S[^|]*?)\s*\|\s*([\d.]+|nan)\s*\|\s*([\d.]+|nan)\s*\|\s*$')


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    write = commands.add_parser('write', help="write a demo's summary.json")
    write.add_argument('work_dir')
    write.add_argument('--demo', required=True, choices=['detection', 'segmentation'])
    write.add_argument('--started', type=float, required=True,
                       help="the demo's start in seconds since the epoch (date +%%s.%%N)")
    write.add_argument('--train-time', type=float, required=True, help='seconds')
    write.add_argument('--pictures', required=True, help='the folder of drawn predictions')
    write.add_argument('--log', help="tools/test.py's output (default: WORK_DIR/demo.log)")
    write.add_argument('--tag', default='', help='prefix of the printed lines, e.g. demo-det')
    table = commands.add_parser('table', help='print the table of the demos')
    table.add_argument('summaries', nargs='*', default=list(DEFAULT_DIRS),
                       help='summary.json files or the work dirs holding them')
    table.add_argument('--time-limit', type=float, metavar='S',
                       help='seconds each run should take at most (e.g. 480)')
    formats = commands.add_parser('formats', help='the metric of each exported format')
    formats.add_argument('deploy_dirs', nargs='+', help="scripts/deploy_accuracy.sh's folders")
    args = parser.parse_args(argv)
    if getattr(args, 'time_limit', None) is not None and not args.time_limit > 0:
        raise cli.UsageError(f'--time-limit {args.time_limit:g} must be a number of seconds '
                             f'above 0.')
    return args


def finite(value):
    """``value`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def fmt(value, spec: str = '.3f') -> str:
    return 'n/a' if value is None else format(value, spec)


def class_ious(log: Path) -> dict:
    """The last per-class IoU table in ``log`` as {class: IoU or None for nan}."""
    text = log.read_text(errors='replace') if log.is_file() else ''
    start = text.rfind('per class results:')
    if start < 0:
        raise cli.UsageError(f'{log} has no per-class IoU table ("per class results:"): pass '
                             f'the output of tools/test.py with --log.')
    ious = {}
    for line in text[start:].splitlines()[1:]:
        row = CLASS_ROW.match(line.strip())
        if row and row[1] != 'Class':
            ious[row[1]] = finite(row[2])
        elif ious and not line.strip().startswith('+'):
            break  # the end of the table
    return ious


def training(work_dir: Path) -> dict:
    """Iterations, mean s/iteration (the first logged window, with start-up, left out when
    there are more) and the first and last logged loss of the run's training log."""
    curves = read_log(find_log(work_dir))
    iters, times = curves.train.get('time', ([], []))
    steady = times[1:] if len(times) > 1 else times
    loss_iters, losses = curves.train.get('loss', ([], []))
    return dict(iterations=max(iters + loss_iters, default=None),
                s_per_iter=finite(round(sum(steady) / len(steady), 3)) if steady else None,
                first_loss=finite(losses[0]) if losses else None,
                last_loss=finite(losses[-1]) if losses else None,
                train_log=str(curves.log))


def write(args) -> None:
    work = Path(args.work_dir)
    wall_time = round(time.time() - args.started, 1)
    metrics_file = work / 'test_metrics.json'
    cli.check_file(metrics_file, 'Metrics file (tools/test.py writes it)')
    tested = json.loads(metrics_file.read_text())
    metrics = tested['metrics']
    summary = dict(demo=args.demo)
    if args.demo == 'detection':
        value = finite(metrics.get('coco/bbox_mAP'))
        at50, at75 = (finite(metrics.get(f'coco/bbox_mAP_{k}')) for k in ('50', '75'))
        summary.update(metric='box mAP', value=value, target=f'box mAP >= {DET_TARGET}',
                       passed=value is not None and value >= DET_TARGET,
                       details={'box mAP@0.5': at50, 'box mAP@0.75': at75})
        result = f'box mAP@[0.5:0.95] {fmt(value)} (mAP@0.5 {fmt(at50)}, mAP@0.75 {fmt(at75)})'
    else:
        value, ious = finite(metrics.get('mIoU')), class_ious(Path(args.log or work / 'demo.log'))
        measured = {c: v for c, v in ious.items() if v is not None}
        worst = min(measured, key=measured.get) if measured else None
        summary.update(
            metric='mIoU', value=value,
            target=f'mIoU >= {MIOU_TARGET:.0f}%, every class >= {CLASS_TARGET:.0f}%',
            passed=(value is not None and value >= MIOU_TARGET and worst is not None
                    and len(measured) == len(ious) and measured[worst] >= CLASS_TARGET),
            worst_class=dict(name=worst, iou=measured[worst]) if worst else None,
            class_iou=ious, details={'aAcc': finite(metrics.get('aAcc'))})
        result = f'mIoU {fmt(value, ".1f")}%' + (
            f', worst class {worst} {measured[worst]:.1f}% IoU' if worst else '')
    pictures = Path(args.pictures)
    summary.update(wall_time_s=wall_time, train_time_s=args.train_time,
                   **training(work), pictures=str(pictures), curves=str(work / 'curves.png'),
                   log=str(args.log or work / 'demo.log'), config=tested.get('config'))
    out = work / 'summary.json'
    out.write_text(json.dumps(summary, indent=2, allow_nan=False) + '\n')

    tag = f'{args.tag}: ' if args.tag else ''
    verdict = 'target met' if summary['passed'] else 'target MISSED'
    lines = [f'test {result}; {summary["target"]}: {verdict}']
    if args.demo == 'segmentation':
        lines.append('per-class IoU ' + ', '.join(f'{c} {fmt(v, ".1f")}'
                                                  for c, v in ious.items()))
    pngs = len(list(pictures.glob('*.png')))
    lines += [f'pictures {pictures}/ ({pngs} PNGs), curves {summary["curves"]}',
              f'full log {summary["log"]}; summary {out}',
              f'wall time {wall_time:.0f} s (training {args.train_time:.0f} s, '
              f'{fmt(summary["s_per_iter"], ".2f")} s/iteration)']
    print('\n'.join(tag + line for line in lines), flush=True)


def load_summary(path: str) -> dict:
    file = Path(path)
    file = file / 'summary.json' if file.is_dir() or not file.suffix else file
    if not file.is_file():
        raise cli.UsageError(f'{file} does not exist: run the demo first (make demo, or '
                             f'scripts/demo_detection.sh and scripts/demo_segmentation.sh).')
    try:
        return json.loads(file.read_text())
    except ValueError as e:
        raise cli.UsageError(f'{file} is not a demo summary ({e}): run the demo again.') from e


def row(summary: dict) -> list:
    value, worst = summary.get('value'), summary.get('worst_class')
    if summary['metric'] == 'mIoU':
        metric = f'mIoU {fmt(value, ".1f")}%'
        if worst:
            metric += f', worst {worst["name"]} {worst["iou"]:.1f}%'
    else:
        metric = f'{summary["metric"]} {fmt(value)}'
    return [summary['demo'], metric, summary['target'], 'pass' if summary['passed'] else 'FAIL',
            f'{summary["wall_time_s"]:.0f} s', fmt(summary.get('s_per_iter'), '.2f'),
            summary['pictures'].rstrip('/') + '/']


def within(summary: dict, limit: float) -> bool:
    return summary['wall_time_s'] <= limit


def span(values: list, spec: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return 'n/a'
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f'{low}-{high}'


def tally(demo: str, summaries: list, limit: Optional[float]) -> str:
    """One line counting a demo's runs: target met, time limit held, wall times, s/iteration."""
    n = len(summaries)
    line = f'{demo}: target met in {sum(s["passed"] for s in summaries)} of {n} runs'
    if limit is not None:
        line += f', within {limit:g} s in {sum(within(s, limit) for s in summaries)} of {n}'
    walls = span([s['wall_time_s'] for s in summaries], '.0f')
    rates = span([s.get('s_per_iter') for s in summaries], '.2f')
    return f'{line} (wall time {walls} s, {rates} s/iteration)'


def table(args) -> None:
    summaries = [load_summary(path) for path in args.summaries]
    limit = args.time_limit
    rows = [['demo', 'metric', 'target', 'result', 'wall time', 's/iter', 'pictures']]
    if limit is not None:
        rows[0].insert(5, f'<= {limit:g} s')
    for summary in summaries:
        cells = row(summary)
        if limit is not None:
            cells.insert(5, 'yes' if within(summary, limit) else 'NO')
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print('  '.join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), flush=True)
    runs = {}
    for summary in summaries:
        runs.setdefault(summary['demo'], []).append(summary)
    for demo, of_demo in runs.items():
        if len(of_demo) > 1 or limit is not None:
            print(tally(demo, of_demo, limit), flush=True)


#: The formats scripts/deploy_accuracy.sh scores, by the folder tools/test.py wrote into.
FORMATS = {'test_fused': 'fused PyTorch (fused.pth)', 'test_onnx': 'ONNX Runtime FP32',
           'test_tflite': 'LiteRT FP32', 'test_tflite_int8': 'LiteRT INT8',
           'test_mediapipe': 'LiteRT FP32 in MediaPipe Tasks',
           'test_mediapipe_int8': 'LiteRT INT8 in MediaPipe Tasks'}
METRICS = {'coco/bbox_mAP': ('box mAP', '.3f'), 'mIoU': ('mIoU %', '.2f')}


def formats(args) -> None:
    """One row per (model, format): the metric of its test_metrics.json."""
    rows = [['model', 'format', 'metric', 'value']]
    for folder in map(Path, args.deploy_dirs):
        for sub, label in FORMATS.items():
            file = folder / sub / 'test_metrics.json'
            cli.check_file(file, 'Metrics file (scripts/deploy_accuracy.sh writes it)')
            metrics = json.loads(file.read_text())['metrics']
            key = next((k for k in METRICS if k in metrics), None)
            if key is None:
                raise cli.UsageError(f'{file} has neither box mAP nor mIoU: run '
                                     f'scripts/deploy_accuracy.sh again.')
            name, spec = METRICS[key]
            rows.append([str(folder), label, name, fmt(finite(metrics[key]), spec)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print('  '.join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), flush=True)


def main(argv=None):
    args = parse_args(argv)
    {'write': write, 'table': table, 'formats': formats}[args.command](args)


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
