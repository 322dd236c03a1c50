"""Copy the models ``make demo`` trained into the tests' fixtures: each demo's last checkpoint as
train-time weights in float16 (half the bytes; the tests load them into float32 models) with
its dataset meta and iteration, without the optimizer state.

    make demo && .venv/bin/python tests/data/demo_models/copy_from_demo.py

The deployment tests (tests/helpers.py, DemoExports) export these models and score the files on
demo test scenes; a model change that these weights no longer fit makes them fail with one
sentence naming the keys, and this script run after ``make demo`` renews them.
"""
from pathlib import Path

import torch

from mobileone_dense.apis import read_checkpoint

ROOT = Path(__file__).resolve().parents[3]
DEMOS = {'ssdlite_mobileone_mu0.pth': 'work_dirs/demo_detection',
         'deeplabv3_mobileone_mu0.pth': 'work_dirs/demo_segmentation'}

for name, work in DEMOS.items():
    last = Path((ROOT / work / 'last_checkpoint').read_text().strip())
    checkpoint = read_checkpoint(last)
    meta = {k: checkpoint['meta'][k] for k in ('dataset_meta', 'iter', 'epoch')}
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in checkpoint['state_dict'].items()}
    out = Path(__file__).parent / name
    torch.save(dict(meta=meta, state_dict=state), out)
    print(f'{last} -> {out} ({out.stat().st_size / 2 ** 20:.1f} MB)')
