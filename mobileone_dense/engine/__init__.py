"""Training machinery for mmengine's Runner: the bfloat16 CPU optimizer wrapper and an optimizer
constructor that merges parameter groups of equal settings."""
from .optim_constructor import MergedGroupsOptimWrapperConstructor, merge_param_groups
from .optim_wrapper import CPUBF16OptimWrapper, cpu_bf16_instructions, require_cpu_bf16

__all__ = ['CPUBF16OptimWrapper', 'MergedGroupsOptimWrapperConstructor', 'cpu_bf16_instructions',
           'merge_param_groups', 'require_cpu_bf16']
