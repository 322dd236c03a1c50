"""The latency benchmark's picture: one panel per group (and part), a cluster of bars per model,
one bar per runtime, on a log scale."""
from __future__ import annotations

from pathlib import Path

TITLES = {'backbone': 'backbone, {s}x{s}', 'ssdlite': 'SSDLite, {s}x{s}',
          'deeplabv3': 'DeepLabV3 (OS 8), {s}x{s}'}
COLORS = {'train': 'tab:gray', 'pytorch': 'tab:blue', 'onnx': 'tab:green',
          'litert': 'tab:orange', 'litert_int8': 'tab:red', 'mediapipe': 'tab:purple',
          'mediapipe_int8': 'tab:pink'}


def draw_latency(rows: list[dict], runtimes, labels: dict, path: str | Path,
                 threads: int) -> Path:
    """Draw the latency rows (``group``, ``model``, ``size``, ``part``, ``ms`` per runtime)
    into ``path`` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    panels = list(dict.fromkeys((r['group'], r['part']) for r in rows))
    widest = max(sum(1 for r in rows if (r['group'], r['part']) == p) for p in panels)
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(max(4.0, 1.0 + 0.8 * widest) * len(panels), 4.6))
    width = 0.8 / len(runtimes)
    for ax, (group, part) in zip(axes[0], panels):
        g = [r for r in rows if (r['group'], r['part']) == (group, part)]
        for i, runtime in enumerate(runtimes):
            xs = [j + (i - (len(runtimes) - 1) / 2) * width for j in range(len(g))]
            ax.bar(xs, [r['ms'].get(runtime, 0) for r in g], width, color=COLORS[runtime],
                   label=labels[runtime])
        ax.set_xticks(range(len(g)))
        ax.set_xticklabels([r['model'] for r in g], fontsize=8)
        ax.set_yscale('log')
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f'{y:g}'))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel('latency, batch 1 (ms, median, log scale)')
        ax.grid(alpha=0.3, axis='y')
        title = TITLES.get(group, group + ', {s}x{s}').format(s=g[0]['size'])
        ax.set_title(title + ('' if part == 'network' else f', {part}'), fontsize=10)
    fig.suptitle(f'MobileOne and MobileNetV2, train-time and deployed, batch 1, {threads} CPU '
                 f'threads', fontsize=10)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc='lower center', ncol=len(names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
