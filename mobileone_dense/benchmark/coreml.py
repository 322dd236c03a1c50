"""``tools/benchmark.py coreml``: the paper's SSDLite and DeepLabV3 configs (S0-S4) and the demo
SSDLite converted to Core ML and checked, with the time each conversion takes.

Each config's model is built with seeded random weights (conversion does not depend on them),
fused and written at its test size by :func:`~mobileone_dense.export.coreml.export_coreml`,
which reads the package back: one ``conv`` per convolution of the fused network and no
``batch_norm``, i.e. no train-time branch survived; a detector must be the Vision pipeline
(the program, then NMS at its config's thresholds; classes labelled ``0..N-1``, since random
weights come with no class names), a segmentor must declare its class map. Core ML predicts only
on macOS and iOS, so the packages are not run here; they stay in ``--work-dir`` to be taken to
a Mac.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .. import apis
from ..errors import UserError
from ..export.coreml import PRECISIONS, SEGMENTOR_OUTPUTS, export_coreml
from ..export.coreml_pipeline import vision_nms
from ..export.numerics import make_image
from ..models import reparameterize_model
from ..tasks import task_of
from .common import WORK_DIR, format_table, machine_info

CONFIGS = tuple(str(apis.config_path(task, v).relative_to(apis.ROOT))
                for task in ('detection', 'segmentation')
                for v in apis.PAPER_VARIANTS + (('mu0_demo', ) if task == 'detection' else ()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--configs', nargs='+', default=list(CONFIGS), metavar='CONFIG',
                        help='configs to convert (default: SSDLite S0-S4 and the demo, '
                             'DeepLabV3 VOC S0-S4)')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp16')
    parser.add_argument('--work-dir', default=str(WORK_DIR / 'coreml'),
                        help='where the .mlpackage folders go (default: %(default)s)')


def check_config(config: str, precision: str, work_dir: Path, log=print) -> dict:
    """Build, fuse, convert and check one config; returns its row. ``log`` gets the note
    that a detector's classes are labelled ``0..N-1``."""
    cfg = apis.load_config(config)
    task = task_of(cfg)
    size = task.default_input_size(cfg)
    torch.manual_seed(0)
    network = task.network(reparameterize_model(apis.build_model(cfg)), size)
    detector = task.name == 'detection'
    nms = vision_nms(cfg.model.test_cfg, network.num_classes, log=log) if detector else None
    start = time.perf_counter()
    report = export_coreml(network, make_image(size), work_dir / f'{Path(config).stem}.mlpackage',
                           precision, task.network_output_names if detector else
                           SEGMENTOR_OUTPUTS, log=lambda line: None, nms=nms)
    pipeline = report['pipeline'] or {}
    return dict(config=config, input=f'{size[0]}x{size[1]}', ok=report['ok'],
                convs=report['convs'], expected_convs=report['expected_convs'],
                batch_norms=report['batch_norms'], ops=report['ops_total'],
                pipeline=pipeline.get('models'), nms=None if nms is None else dict(
                    iou_threshold=pipeline.get('iou_threshold'),
                    confidence_threshold=pipeline.get('confidence_threshold'),
                    labels=len(pipeline.get('classes', []))),
                outputs=[o['name'] for o in report['outputs']], size_mb=report['size_mb'],
                seconds=time.perf_counter() - start, error=None)


def _model(row: dict) -> str:
    """What the package holds, for the table."""
    if row['pipeline'] == ['mlProgram', 'nonMaximumSuppression']:
        nms = row['nms']
        return (f'pipeline + NMS (IoU {nms["iou_threshold"]:g}, conf '
                f'{nms["confidence_threshold"]:g})')
    return f'program -> {", ".join(row["outputs"])}'


def run(args: argparse.Namespace) -> dict:
    rows, notes = [], set()

    def note(line: str) -> None:  # once per number of classes
        if line not in notes:
            notes.add(line)
            print(f'  {line} (random weights name none)', flush=True)

    for i, config in enumerate(args.configs, 1):
        print(f'[{i}/{len(args.configs)}] {config}: converting to Core ML ({args.precision})',
              flush=True)
        try:
            rows.append(check_config(config, args.precision, Path(args.work_dir), note))
        except UserError as e:  # one config that cannot be converted does not stop the others
            print(f'  error: {e}', flush=True)
            rows.append(dict(config=config, ok=False, error=str(e)))
    text = format_table(
        ['config', 'input', 'model', 'conv ops / convolutions', 'batch_norm', 'ops', 'MB',
         'convert s', 'OK'],
        [[r['config'], r['input'], _model(r), f'{r["convs"]} / {r["expected_convs"]}',
          r['batch_norms'], r['ops'], f'{r["size_mb"]:.1f}', f'{r["seconds"]:.0f}',
          'yes' if r['ok'] else 'NO']
         if r['error'] is None else [r['config'], '-', '-', '-', '-', '-', '-', '-', 'error']
         for r in rows])
    print(text)
    return dict(benchmark='coreml', machine=machine_info(), precision=args.precision,
                rows=rows, table=text, ok=all(r['ok'] for r in rows))
