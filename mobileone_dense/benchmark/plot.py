"""The export benchmark's picture: latency against parameters, train-time and fused PyTorch and
fused ONNX Runtime, one panel per group of models."""
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
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    groups = [g for g in GROUP_TITLES if any(r['group'] == g for r in rows)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.6), squeeze=False)
    for ax, group in zip(axes[0], groups):
        g = [r for r in rows if r['group'] == group]
        _panel(ax, g)
        ax.set_yscale('log')
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f'{y:g}'))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(GROUP_TITLES[group].format(s=g[0]['size']))
        ax.set_xlabel('parameters (M)')
        ax.set_ylabel(f'latency, batch 1 (ms, {stat}, log scale)')
        ax.grid(alpha=0.3)
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc='lower right')
    threads = f' ({threads} CPU threads)' if threads else ''
    fig.suptitle(f'MobileOne: train-time vs fused, PyTorch vs ONNX Runtime{threads}', fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
