"""``tools/benchmark.py coreml``: the paper's SSDLite and DeepLabV3 configs (S0-S4) converted
to Core ML ML programs and checked: one conv per convolution, no batch_norm left.

For each config (by default ``configs/ssdlite/mobileone_{s0..s4}.py`` at 320x320 and
``configs/deeplabv3/mobileone_{s0..s4}_voc.py`` at 512x512; ``--configs`` picks others): the
model is built with random weights (conversion and op counts do not depend on them; nothing is
downloaded), fused, and its network (:meth:`~mobileone_dense.tasks.base.Task.network`, what
``tools/export.py --format coreml`` converts) written as ``.mlpackage`` at the config's input
size by :func:`~mobileone_dense.export.coreml.write_coreml`. Then
:func:`~mobileone_dense.export.coreml_check.inspect_coreml` reads the program back: the
``conv`` ops must equal the convolutions the fused PyTorch network runs and no ``batch_norm``
may remain, i.e. no train-time branch survived. The table gives those counts, all
non-``const`` ops, the package's size on disk and the conversion time (``torch.export`` plus
coremltools, on this machine under its current load).

Core ML predicts only on macOS and iOS, so the programs are not run here; the packages stay in
``--work-dir`` to be taken to a Mac.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .. import apis
from ..errors import UserError
from ..export import coreml, coreml_check
from ..export.fusion import fuse, has_mobileone
from ..export.numerics import make_image
from ..tasks import task_of
from .common import WORK_DIR, format_table, machine_info

#: The configs checked by default: SSDLite S0-S4, then DeepLabV3 S0-S4 (VOC).
DEFAULT_CONFIGS = tuple(str(apis.config_path(task, v).relative_to(apis.ROOT))
                        for task in ('detection', 'segmentation') for v in apis.PAPER_VARIANTS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--configs', nargs='+', default=list(DEFAULT_CONFIGS), metavar='CONFIG',
                        help='configs to convert (default: SSDLite and DeepLabV3 VOC, S0-S4)')
    parser.add_argument('--precision', choices=coreml.PRECISIONS, default='fp16',
                        help='weights and compute of the ML programs (default: %(default)s)')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help="input size of every model (default: each config's own)")
    parser.add_argument('--threads', type=int, default=2, help='torch threads (%(default)s)')
    parser.add_argument('--work-dir', default=str(WORK_DIR / 'coreml'),
                        help='where the .mlpackage folders go (default: %(default)s)')


def _name(config: str) -> str:
    path = Path(config)
    return path.parent.name + '_' + path.stem if path.parent.name else path.stem


def check_config(config: str, cfg, precision: str, input_size, work_dir: Path) -> dict:
    """Build, fuse, convert and check one config (read as ``cfg``); returns its row."""
    task = task_of(cfg)
    size = tuple(input_size) if input_size else task.default_input_size(cfg)
    torch.manual_seed(0)
    model = build = apis.build_model(cfg)
    if has_mobileone(build):
        model = fuse(build)
    network = task.network(model, size)
    image = make_image(size)
    expected = coreml_check.count_convs(network, image)
    start = time.perf_counter()
    path = coreml.write_coreml(network, image, work_dir / f'{_name(config)}.mlpackage',
                               precision=precision, output_names=task.network_output_names,
                               log=lambda line: print(f'  {line}', flush=True))
    seconds = time.perf_counter() - start
    report = coreml_check.inspect_coreml(path, expected)
    return dict(config=config, input=f'{size[0]}x{size[1]}', fused=has_mobileone(build),
                expected_convs=expected, convs=report['convs'],
                batch_norms=report['batch_norms'], ops_total=report['ops_total'],
                size_mb=report['size_mb'], convert_s=seconds, precision=report['precision'],
                ok=report['ok'], problems=report['problems'], error=None,
                input_type=report['input'], outputs=report['outputs'],
                op_counts=report['op_counts'], path=str(path))


def table(rows: list[dict], precision: str) -> str:
    header = ['config', 'input', 'convs expected / found', 'batch_norm left', 'ops (no const)',
              f'{precision} MB', 'convert s', 'OK']
    lines = []
    for r in rows:
        if r['error']:
            lines.append([r['config'], r['input'], '-', '-', '-', '-', '-', 'error'])
            continue
        lines.append([r['config'], r['input'], f'{r["expected_convs"]} / {r["convs"]}',
                      r['batch_norms'], r['ops_total'], f'{r["size_mb"]:.1f}',
                      f'{r["convert_s"]:.0f}', 'yes' if r['ok'] else 'NO'])
    return format_table(header, lines)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfgs = [apis.load_config(c) for c in args.configs]  # a wrong path fails before any work
    rows = []
    for i, (config, cfg) in enumerate(zip(args.configs, cfgs), 1):
        print(f'[{i}/{len(args.configs)}] {config}: building, fusing, converting to Core ML '
              f'({args.precision}) ...', flush=True)
        try:
            row = check_config(config, cfg, args.precision, args.input_size, work_dir)
        except UserError as e:  # one config that cannot be converted does not stop the others
            row = dict(config=config, input='-', ok=False, error=str(e), problems=[str(e)])
            print(f'  error: {e}', flush=True)
        else:
            print(f'  {row["convs"]} conv ops for {row["expected_convs"]} convolutions, '
                  f'{row["batch_norms"]} batch_norm, {row["ops_total"]} ops, '
                  f'{row["size_mb"]:.1f} MB: {"OK" if row["ok"] else "FAILED"}', flush=True)
        rows.append(row)
    text = table(rows, args.precision)
    notes = [f'{r["config"]}: {"; ".join(r["problems"])}' for r in rows if not r['ok']]
    notes.append(f'{coreml_check.PREDICTIONS_NOTE} (the packages are in {work_dir}).')
    print(text, *notes, sep='\n')
    return dict(benchmark='coreml', machine=machine_info(), precision=args.precision,
                deployment_target=coreml.DEPLOYMENT_TARGET, rows=rows, notes=notes,
                table=text, ok=all(r['ok'] for r in rows))
