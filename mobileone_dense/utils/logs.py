"""Reading a run's mmengine scalar log into curves and drawing them (tools/analyze_logs.py).

mmengine's ``LocalVisBackend`` appends a JSON object a line to ``WORK_DIR/<timestamp>/vis_data/
scalars.json`` (and to ``<timestamp>.json`` beside it). ``LoggerHook`` writes a training line
every ``interval`` iterations (``iter``, the global iteration; ``epoch`` in by-epoch runs; ``lr``,
``loss``, ``loss_*``, ``time``, ...; ``train/``-prefixed under ``log_with_hierarchy``) and a
validation line after each evaluation (metrics such as ``coco/bbox_mAP`` or ``mIoU``, and
``step``: the epoch, or the iteration under ``log_metric_by_epoch=False``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..errors import UsageError

POSITION_KEYS = ('iter', 'epoch', 'step')
NOT_METRICS = POSITION_KEYS + ('time', 'data_time', 'memory')


@dataclass
class Curves:
    """Each training key's (iterations, values); each metric's (``val_axis`` positions, values)."""
    log: Path
    train: dict = field(default_factory=dict)
    val: dict = field(default_factory=dict)
    val_axis: str = 'iteration'
    train_lines: int = 0
    val_lines: int = 0

    def loss_keys(self) -> list:  # 'loss' (their sum) first
        keys = sorted(k for k in self.train if k.startswith('loss'))
        return sorted(keys, key=lambda k: k != 'loss')

    def lr_keys(self) -> list:  # not base_lr, the scheduler's starting point
        return sorted(k for k in self.train if k.endswith('lr') and not k.endswith('base_lr'))


def find_log(path) -> Path:
    """The log itself, or the newest ``*/vis_data/scalars.json`` under a work dir."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise UsageError(f'{path} does not exist: pass a run\'s work dir or its '
                         f'<timestamp>/vis_data/scalars.json.')
    for pattern in ('scalars.json', 'vis_data/scalars.json', '*/vis_data/scalars.json'):
        logs = [p for p in path.glob(pattern) if p.is_file()]
        if logs:  # mmengine names each run's folder by its start time, YYYYMMDD_HHMMSS
            return max(logs, key=lambda p: (p.parent.parent.name, p.stat().st_mtime))
    raise UsageError(f'{path} holds no mmengine log (<timestamp>/vis_data/scalars.json): '
                     f'pass the work dir of a run that has logged at least one iteration.')


def default_out(log: Path) -> Path:
    """``WORK_DIR/curves.png`` for ``WORK_DIR/<timestamp>/vis_data/*.json``, else beside the log."""
    log = Path(log).absolute()
    return (log.parents[2] if log.parent.name == 'vis_data' else log.parent) / 'curves.png'


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_log(path) -> Curves:
    """Parse a scalar log; :class:`UsageError` names the file and line of a corrupt line."""
    curves, val_rows, last_iter, epochs = Curves(Path(path)), [], 0, []
    lines = Path(path).read_bytes().splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) and not line.endswith(b'\n'):
                break  # the line mmengine is writing right now
            record = None
        if not isinstance(record, dict) or not _number(record.get('iter', 0)):
            raise UsageError(f'{path}:{number} is not a JSON object: the file is corrupt or '
                             f'not an mmengine scalars.json log.')
        if 'iter' in record:  # a training line
            curves.train_lines += 1
            last_iter = int(record['iter'])
            if _number(record.get('epoch')):
                epochs.append(record['epoch'])
            for key, value in record.items():
                key = key[6:] if key.startswith('train/') else key
                if key not in POSITION_KEYS and _number(value):
                    xs, ys = curves.train.setdefault(key, ([], []))
                    xs.append(last_iter)
                    ys.append(float(value))
        else:
            step = record.get('step', 0)
            val_rows.append((step if _number(step) else 0, last_iter, record))
    if not curves.train_lines:
        raise UsageError(f'{path} has no training lines (objects with an "iter" key): LoggerHook '
                         f'writes one every default_hooks.logger.interval iterations.')
    # By-epoch runs log validation at step = epoch (or the iteration under
    # log_metric_by_epoch=False); iteration-based runs at step = epoch, which stays 0 with
    # mmengine's default log_metric_by_epoch=True, so the iteration logged before stands in.
    by_epoch = bool(epochs) and all(step <= max(epochs) for step, _, _ in val_rows)
    curves.val_axis, curves.val_lines = 'epoch' if by_epoch else 'iteration', len(val_rows)
    for step, after_iter, record in val_rows:
        for key, value in record.items():
            key = key[4:] if key.startswith('val/') else key
            if key not in NOT_METRICS and _number(value) and value != -1:  # -1: pycocotools' n/a
                xs, ys = curves.val.setdefault(key, ([], []))
                xs.append(step if epochs else max(step, after_iter))
                ys.append(float(value))
    return curves


def _panel(ax, series: dict, keys: Sequence[str], title: str, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations and epochs
    for key in keys:
        xs, ys = series[key]
        ax.plot(xs, ys, marker='o' if len(xs) <= 50 else None, markersize=3, label=key)
    ax.legend(fontsize='small')


def draw(curves: Curves, out, keys: Optional[Sequence[str]] = None):
    """Draw what the log has side by side into the PNG ``out``: losses (or ``keys``), learning
    rate and validation metrics, a panel each; returns the matplotlib figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    keys = list(keys) if keys else curves.loss_keys()
    missing = [k for k in keys if k not in curves.train]
    if missing:
        raise UsageError(f'{curves.log} has no training key {", ".join(missing)}: it logs '
                         f'{", ".join(sorted(curves.train))}.')
    losses = all(k.startswith('loss') for k in keys)
    panels = [(curves.train, keys, 'Training losses' if losses else 'Training scalars',
               'iteration', 'loss' if losses else 'value'),
              (curves.train, curves.lr_keys(), 'Learning rate', 'iteration', 'learning rate'),
              (curves.val, sorted(curves.val), 'Validation metrics', curves.val_axis, 'metric')]
    panels = [p for p in panels if p[1]]
    if not panels:
        raise UsageError(f'{curves.log} has no loss, learning rate or metric to draw: it logs '
                         f'{", ".join(sorted(curves.train))}.')
    fig = Figure(figsize=(16 * len(panels) / 3, 4.8), layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        _panel(ax, *panel)
        if panel[2] == 'Learning rate':
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 3))
    fig.suptitle(str(Path(*curves.log.parts[-4:])))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format='png', dpi=100)
    return fig
