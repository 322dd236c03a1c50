"""``tools/benchmark.py train --blocks``: why strided depthwise MobileOne blocks train in float32
under CPU bfloat16 autocast.

For every strided depthwise block of a MobileOne variant's train-time network (its input shape
taken from one forward pass at the train benchmark's ``--size`` and ``--batch``), it times the
block's forward and backward three ways, side by side: float32, bfloat16 autocast with the
block kept in float32 (what training does, :attr:`MobileOneBlock.float32_strided_depthwise`),
and bfloat16 autocast computing the block in bfloat16 (oneDNN's bfloat16 kernels). The table
shows the median milliseconds of the rounds and the per-round ratio of the two bfloat16 ways.
"""
from __future__ import annotations

import argparse
import functools
import statistics

import torch

from ..models import MobileOne, MobileOneBlock
from ..utils.timing import time_side_by_side
from .common import format_table, machine_info
from .load import CPULoad

MODES = ('fp32', 'bf16 (block in fp32)', 'bf16 (bf16 kernels)')


def strided_depthwise_inputs(variant: str, size: int,
                             batch: int) -> list[tuple[str, MobileOneBlock, tuple]]:
    """(name, block, input shape at ``batch``) of every strided depthwise block of a train-time
    ``variant`` fed ``size`` x ``size`` images."""
    net = MobileOne(arch=variant, out_indices=(3, )).train()
    shapes, hooks = [], []
    for name, m in net.named_modules():
        if isinstance(m, MobileOneBlock) and m.strided_depthwise:
            hooks.append(m.register_forward_hook(
                lambda m, i, o, name=name: shapes.append((name, m, tuple(i[0].shape)))))
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return [(name, block, (batch, *shape[1:])) for name, block, shape in shapes]


def _step(block: MobileOneBlock, x: torch.Tensor, mode: str) -> None:
    block.float32_strided_depthwise = mode != MODES[2]
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=mode != MODES[0]):
        out = block(x)
    out.float().sum().backward()
    block.zero_grad(set_to_none=True)


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variant = args.variants[0] if args.variants else 's0'
    blocks = strided_depthwise_inputs(variant, args.size, args.batch)
    fns = {}
    for name, block, shape in blocks:
        x = torch.randn(shape)
        for mode in MODES:
            fns[f'{name} {mode}'] = functools.partial(_step, block, x, mode)
    print(f'Strided depthwise blocks of MobileOne-{variant.upper()} (train-time branches), '
          f'forward and backward, {torch.get_num_threads()} threads, {args.rounds} interleaved '
          f'rounds, input {args.size}x{args.size}, batch {args.batch}')
    with CPULoad() as load:
        timed = time_side_by_side(fns, rounds=args.rounds, warmup=1, settle=0, inference=False)
    rows, table = [], []
    for name, block, shape in blocks:
        ms = {mode: timed[f'{name} {mode}']['median_ms'] for mode in MODES}
        ratios = [b / f for f, b in zip(timed[f'{name} {MODES[1]}']['rounds_ms'],
                                         timed[f'{name} {MODES[2]}']['rounds_ms'])]
        ratio = statistics.median(ratios)
        rows.append(dict(block=name, input=list(shape), branches=block.num_conv_branches,
                         ratio_bf16_kernels_over_fp32_block=ratio, **ms))
        table.append([name, 'x'.join(map(str, shape)), *ms.values(), f'{ratio:.2f}x'])
    total = {mode: sum(r[mode] for r in rows) for mode in MODES}
    table.append(['all', '', *total.values(), f'{total[MODES[2]] / total[MODES[1]]:.2f}x'])
    header = ['block', 'input', *(f'{m} ms' for m in MODES), 'bf16 kernels / block in fp32']
    text = format_table(header, table)
    print(text)
    note = f'other processes used {100 * load.others:.0f}% of the CPU meanwhile'
    print(note)
    return dict(benchmark='train --blocks', machine=machine_info(), variant=variant,
                rounds=args.rounds, others_load=load.others, rows=rows, notes=[note],
                table=text)
