"""``tools/benchmark.py train --optim``: one optimizer step of the configs whose ``paramwise_cfg``
gives mmengine's constructor one parameter group per tensor, built three ways side by side.

- ``mmengine groups``: ``DefaultOptimWrapperConstructor`` with the config's optimizer, not fused
  (how these configs trained before :class:`MergedGroupsOptimWrapperConstructor`);
- ``merged``: the groups merged by equal settings, not fused;
- ``merged, fused`` (what the configs use now): merged groups and PyTorch's fused kernel.

Each way gets its own copy of the model with the same random gradients, so each step does the
same work; the table shows the median milliseconds of the interleaved rounds and the median of
the per-round ratios against mmengine's groups.
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch

from .. import apis
from ..utils.timing import time_side_by_side
from .common import format_table, machine_info
from .load import CPULoad

CONFIGS = {'SSDLite-MobileOne-mu0 (demo)': 'configs/ssdlite/mobileone_mu0_demo.py',
           'DeepLabV3-MobileOne-mu0 (demo)': 'configs/deeplabv3/mobileone_mu0_demo.py',
           'DeepLabV3-MobileOne-S0 (VOC)': 'configs/deeplabv3/mobileone_s0_voc.py'}
WAYS = ('mmengine groups', 'merged', 'merged, fused')


def optimizers(cfg) -> dict[str, torch.optim.Optimizer]:
    """The three ways of :data:`WAYS`, each over its own copy of ``cfg``'s model with the same
    random gradients."""
    from mmengine.optim import build_optim_wrapper
    model = apis.build_model(cfg).train()

    def with_grads() -> torch.nn.Module:  # a copy of the model (deepcopy leaves out .grad)
        copied = copy.deepcopy(model)
        gen = torch.Generator().manual_seed(0)
        for p in copied.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        return copied

    base = copy.deepcopy(cfg.optim_wrapper)
    base.pop('constructor', None)
    base.optimizer.pop('fused', None)
    merged = copy.deepcopy(base)
    merged.constructor = 'MergedGroupsOptimWrapperConstructor'
    fused = copy.deepcopy(merged)
    fused.optimizer.fused = True
    return {way: build_optim_wrapper(with_grads(), c).optimizer
            for way, c in zip(WAYS, (base, merged, fused))}


def run(args: argparse.Namespace) -> dict:
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')  # not 400 paramwise_options lines
    if args.threads:
        torch.set_num_threads(args.threads)
    fns, groups = {}, {}
    for name, path in CONFIGS.items():
        opts = optimizers(apis.load_config(path))
        for way, opt in opts.items():
            fns[f'{name} {way}'] = opt.step
            groups[f'{name} {way}'] = len(opt.param_groups)
    print(f'One optimizer step, {torch.get_num_threads()} threads, {args.rounds} interleaved '
          f'rounds')
    with CPULoad() as load, torch.no_grad():
        timed = time_side_by_side(fns, rounds=args.rounds, warmup=2, settle=0, inference=False)
    rows, table = [], []
    for name in CONFIGS:
        ms = {way: timed[f'{name} {way}']['median_ms'] for way in WAYS}
        base_rounds = timed[f'{name} {WAYS[0]}']['rounds_ms']
        speedup = {way: statistics.median(b / t for b, t in
                                          zip(base_rounds, timed[f'{name} {way}']['rounds_ms']))
                   for way in WAYS[1:]}
        rows.append(dict(config=CONFIGS[name], name=name,
                         groups={way: groups[f'{name} {way}'] for way in WAYS}, ms=ms,
                         speedup=speedup))
        table.append([name, f'{groups[f"{name} {WAYS[0]}"]} -> {groups[f"{name} {WAYS[1]}"]}',
                      *ms.values(), *(f'{s:.1f}x' for s in speedup.values())])
    header = ['config', 'groups', *(f'{w} ms' for w in WAYS),
              *(f'{w} speed-up' for w in WAYS[1:])]
    text = format_table(header, table)
    print(text)
    note = f'other processes used {100 * load.others:.0f}% of the CPU meanwhile'
    print(note)
    return dict(benchmark='train --optim', machine=machine_info(), rounds=args.rounds,
                others_load=load.others, rows=rows, notes=[note], table=text)
