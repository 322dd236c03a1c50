"""Training machinery for mmengine's Runner: the bfloat16 CPU optimizer wrapper."""
from .optim_wrapper import CPUBF16OptimWrapper, cpu_bf16_instructions, require_cpu_bf16

__all__ = ['CPUBF16OptimWrapper', 'cpu_bf16_instructions', 'require_cpu_bf16']
