"""The benchmarks' pictures: the export benchmark's latency against parameters (train-time and
fused PyTorch, fused ONNX Runtime), one panel per group of models; the deploy benchmark's
latency per runtime (:func:`draw_deploy`)."""
from __future__ import annotations

from pathlib import Path

GROUP_TITLES = {'backbone': 'backbone, {s}x{s}', 'ssdlite': 'SSDLite, {s}x{s}',
                'deeplabv3': 'DeepLabV3 (OS 8), {s}x{s}'}
STYLES = dict(train=dict(marker='o', mfc='white', color='tab:red', label='train-time, PyTorch'),
              fused=dict(marker='o', color='tab:blue', label='fused, PyTorch'),
              onnx=dict(marker='^', color='tab:green', label='fused, ONNX Runtime'))


def _panel(ax, rows: list[dict]) -> None:
    """One group: MobileOne variants as lines (train-time -> fused arrows), peers as squares."""
    mo = sorted((r for r in rows if r['reparam']), key=lambda r: r['params_fused_m'])
    for kind, style in STYLES.items():
        xs = [r['params_train_m' if kind == 'train' else 'params_fused_m'] for r in mo]
        # Fused sizes grow with the variant; train-time ones do not (S0 has k=4 branches).
        ax.plot(xs, [r[f'{kind}_ms'] for r in mo], ls='none' if kind == 'train' else '-',
                lw=1, ms=7, **style)
    for r in mo:
        ax.annotate('', xy=(r['params_fused_m'], r['fused_ms']),
                    xytext=(r['params_train_m'], r['train_ms']),
                    arrowprops=dict(arrowstyle='->', color='0.55', lw=0.8))
        ax.annotate(r['model'].upper(), (r['params_fused_m'], r['onnx_ms']),
                    textcoords='offset points', xytext=(0, -14), ha='center', fontsize=8)
    for r in rows:
        if not r['reparam']:
            ax.plot(r['params_fused_m'], r['fused_ms'], 's', color='tab:purple', ms=7,
                    label=f'{r["model"]}, PyTorch')
            ax.plot(r['params_fused_m'], r['onnx_ms'], 's', mfc='white', ms=7,
                    color='tab:purple', label=f'{r["model"]}, ONNX Runtime')


def draw(rows: list[dict], path: str | Path, stat: str = 'median', threads: int = 0) -> Path:
    """Draw the rows of the export benchmark (``group``, ``model``, ``size``, ``reparam``,
    ``params_{train,fused}_m``, ``{train,fused,onnx}_ms``) into ``path`` (PNG)."""
    plt = _pyplot()
    groups = [g for g in GROUP_TITLES if any(r['group'] == g for r in rows)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.6), squeeze=False)
    for ax, group in zip(axes[0], groups):
        g = [r for r in rows if r['group'] == group]
        _panel(ax, g)
        _latency_axis(ax, stat)
        ax.set_title(GROUP_TITLES[group].format(s=g[0]['size']))
        ax.set_xlabel('parameters (M)')
        ax.legend(fontsize=8, loc='lower right')
    threads = f' ({threads} CPU threads)' if threads else ''
    fig.suptitle(f'MobileOne: train-time vs fused, PyTorch vs ONNX Runtime{threads}', fontsize=11)
    return _save(fig, path)


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _latency_axis(ax, stat: str) -> None:
    """A log latency axis with 1-2-5 ticks, a grid and room above and below."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_yscale('log')
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f'{y:g}'))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f'latency, batch 1 (ms, {stat}, log scale)')
    ax.grid(alpha=0.3)
    ax.margins(y=0.15)


def _save(fig, path: str | Path, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


#: The deploy benchmark's runtimes: key in its rows' ``ms``, label, colour.
DEPLOY_RUNTIMES = (('pytorch', 'fused PyTorch', 'tab:blue'),
                   ('onnx', 'ONNX Runtime FP32', 'tab:green'),
                   ('litert', 'LiteRT FP32', 'tab:orange'),
                   ('litert_int8', 'LiteRT INT8', 'tab:red'))


def draw_deploy(rows: list[dict], path: str | Path, stat: str = 'median',
                threads: int = 0) -> Path:
    """Draw the rows of the deploy benchmark (``group``, ``model``, ``size``, ``part``,
    ``ms`` per runtime, ``int8_speedup``) into ``path`` (PNG): one panel per group and part,
    a cluster of bars per model, one bar per runtime, the INT8 speedup above the INT8 bar."""
    plt = _pyplot()
    panels = list(dict.fromkeys((r['group'], r['part']) for r in rows))
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(max(4.0, 1.0 + 0.75 * max(
                                 sum(1 for r in rows if (r['group'], r['part']) == p)
                                 for p in panels)) * len(panels), 4.6))
    n = len(DEPLOY_RUNTIMES)
    width = 0.8 / n
    for ax, (group, part) in zip(axes[0], panels):
        g = [r for r in rows if (r['group'], r['part']) == (group, part)]
        for i, (key, label, color) in enumerate(DEPLOY_RUNTIMES):
            xs = [j + (i - (n - 1) / 2) * width for j in range(len(g))]
            ax.bar(xs, [r['ms'][key] for r in g], width, color=color, label=label)
        for j, r in enumerate(g):
            ax.annotate(f'{r["int8_speedup"]:.1f}x',
                        (j + (n - 1) / 2 * width, r['ms']['litert_int8']),
                        textcoords='offset points', xytext=(0, 2), ha='center', fontsize=7)
        ax.set_xticks(range(len(g)))
        ax.set_xticklabels([r['model'].replace('MobileOne-', '') for r in g], fontsize=8)
        _latency_axis(ax, stat)
        title = GROUP_TITLES.get(group, group + ', {s}x{s}').format(s=g[0]['size'])
        ax.set_title(title + ('' if part == 'network' else f', {part}'), fontsize=10)
    threads = f', {threads} CPU threads' if threads else ''
    fig.suptitle(f'Deployed networks, batch 1{threads}\n(above the INT8 bar: its speedup over '
                 f'LiteRT FP32)', fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=len(labels), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path, layout=False)
