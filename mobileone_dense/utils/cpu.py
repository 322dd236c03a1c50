"""What this CPU computes fast: its name and the instruction sets that bfloat16 training and
INT8 inference depend on, as PyTorch's ``torch.cpu.get_capabilities()`` reports them (on Arm,
the kernel's ``/proc/cpuinfo`` features).

A benchmark's figures hold for the CPU they were measured on: bfloat16 training pays only where
the CPU multiplies in bfloat16 (see :mod:`mobileone_dense.engine.optim_wrapper`), and XNNPACK's
INT8 kernels beat its FP32 ones clearly only where the CPU has int8 dot-product instructions
(on x86 without them, they multiply in 16-bit lanes, at about the FP32 rate).
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

# Instruction sets that compute in bfloat16, as torch.cpu.get_capabilities() names them.
NATIVE_BF16 = {'avx512_bf16': 'AVX512-BF16', 'amx_bf16': 'AMX-BF16', 'bf16': 'Arm BF16',
               'sve_bf16': 'Arm SVE-BF16'}
# int8 dot products: x86's as torch names them; Arm's as /proc/cpuinfo's Features line does.
INT8_DOT_X86 = {'avx512_vnni': 'AVX512-VNNI', 'avx_vnni': 'AVX-VNNI', 'amx_int8': 'AMX-INT8'}
INT8_DOT_ARM = {'asimddp': 'Arm dotprod', 'i8mm': 'Arm I8MM'}


@functools.lru_cache(maxsize=1)
def capabilities() -> dict:
    """``torch.cpu.get_capabilities()``, or the two bfloat16 checks older torch releases had."""
    get = getattr(torch.cpu, 'get_capabilities', None)
    if get is not None:
        return dict(get())
    checks = dict(avx512_bf16='_is_avx512_bf16_supported', amx_bf16='_is_amx_tile_supported')
    return {key: getattr(torch.cpu, name, lambda: False)() for key, name in checks.items()}


def _arm_features(cpuinfo: str | Path = '/proc/cpuinfo') -> set[str]:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.lower().startswith('features')
            for flag in line.partition(':')[2].split()}


def cpu_name() -> str:
    return str(capabilities().get('cpu_name') or platform.processor() or platform.machine())


def bf16_instructions() -> list[str]:
    """The CPU's instruction sets that multiply in bfloat16 (names as in NATIVE_BF16)."""
    caps = capabilities()
    return [name for key, name in NATIVE_BF16.items() if caps.get(key)]


def int8_dot_instructions(cpuinfo: str | Path = '/proc/cpuinfo') -> list[str]:
    """The CPU's int8 dot-product instruction sets; empty on a CPU without them."""
    caps = capabilities()
    found = [name for key, name in INT8_DOT_X86.items() if caps.get(key)]
    if platform.machine().lower() in ('aarch64', 'arm64'):
        features = _arm_features(cpuinfo)
        found += [name for key, name in INT8_DOT_ARM.items() if key in features]
    return found
