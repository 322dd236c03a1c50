"""MobileOne variants as data.

Every variant of the paper (Table 7 of the main text, Table 4 of the supplementary material)
is one frozen :class:`MobileOneArch`. Configs and tests ask :func:`stage_channels` for the
width of a stage instead of hard-coding channel counts.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence, Union

from ..errors import UnknownArchError

BASE_CHANNELS = (64, 128, 256, 512)
NUM_STAGES = 5  # stage0 (stem) .. stage4


@dataclass(frozen=True)
class MobileOneArch:
    """The shape of one MobileOne variant.

    Args:
        num_blocks: Pairs of (3x3 depthwise, 1x1 pointwise) blocks in stage1..stage4.
        widths: Width multipliers a1..a4 of stage1..stage4 (stage0 takes min(64, 64 * a1)).
        num_conv_branches: Over-parameterization factor k: conv branches of every block
            after the stem (the stem always has one).
        num_se_blocks: For stage1..stage4, how many of the last pairs carry squeeze-excite.
    """

    num_blocks: tuple[int, int, int, int]
    widths: tuple[float, float, float, float]
    num_conv_branches: int
    num_se_blocks: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        for name in ('num_blocks', 'widths', 'num_se_blocks'):
            value = getattr(self, name)
            if not isinstance(value, Sequence) or len(value) != 4:
                raise ValueError(f'MobileOne arch: {name} must list 4 values (stage1..stage4), '
                                 f'got {value!r}.')
            object.__setattr__(self, name, tuple(value))
        if any(not isinstance(n, int) or n < 1 for n in self.num_blocks):
            raise ValueError(f'MobileOne arch: num_blocks must be positive integers, '
                             f'got {self.num_blocks}.')
        if any(w <= 0 for w in self.widths):
            raise ValueError(f'MobileOne arch: widths must be positive, got {self.widths}.')
        if not isinstance(self.num_conv_branches, int) or self.num_conv_branches < 1:
            raise ValueError(f'MobileOne arch: num_conv_branches must be an integer >= 1, '
                             f'got {self.num_conv_branches!r}.')
        for n_se, n in zip(self.num_se_blocks, self.num_blocks):
            if not isinstance(n_se, int) or not 0 <= n_se <= n:
                raise ValueError(f'MobileOne arch: num_se_blocks {self.num_se_blocks} must be '
                                 f'integers between 0 and num_blocks {self.num_blocks}.')

    @property
    def channels(self) -> tuple[int, int, int, int, int]:
        """Output channels of stage0 (stem) .. stage4."""
        stages = tuple(int(base * w) for base, w in zip(BASE_CHANNELS, self.widths))
        return (min(64, stages[0]), ) + stages


ARCHS: dict[str, MobileOneArch] = {
    's0': MobileOneArch((2, 8, 10, 1), (0.75, 1.0, 1.0, 2.0), num_conv_branches=4),
    's1': MobileOneArch((2, 8, 10, 1), (1.5, 1.5, 2.0, 2.5), num_conv_branches=1),
    's2': MobileOneArch((2, 8, 10, 1), (1.5, 2.0, 2.5, 4.0), num_conv_branches=1),
    's3': MobileOneArch((2, 8, 10, 1), (2.0, 2.5, 3.0, 4.0), num_conv_branches=1),
    's4': MobileOneArch((2, 8, 10, 1), (3.0, 3.5, 3.5, 4.0), num_conv_branches=1,
                        num_se_blocks=(0, 0, 5, 1)),
    'mu0': MobileOneArch((2, 4, 6, 1), (0.75, 0.5, 0.5, 0.75), num_conv_branches=3),
    'mu1': MobileOneArch((2, 6, 8, 1), (0.75, 0.75, 0.75, 1.0), num_conv_branches=2),
    'mu2': MobileOneArch((2, 6, 8, 1), (0.75, 1.0, 1.0, 1.0), num_conv_branches=2),
}

ArchLike = Union[str, Mapping, MobileOneArch]


def get_arch(arch: ArchLike) -> MobileOneArch:
    """Resolve a variant name, a dict of :class:`MobileOneArch` fields, or an arch itself."""
    if isinstance(arch, MobileOneArch):
        return arch
    if isinstance(arch, str):
        key = arch.lower().replace('mobileone_', '').replace('µ', 'mu')
        if key not in ARCHS:
            raise UnknownArchError(f'Unknown MobileOne arch {arch!r}: choose one of '
                             f'{", ".join(ARCHS)} or pass a dict with the fields '
                             f'{", ".join(f.name for f in fields(MobileOneArch))}.')
        return ARCHS[key]
    if isinstance(arch, Mapping):
        names = {f.name for f in fields(MobileOneArch)}
        unknown = set(arch) - names
        if unknown:
            raise ValueError(f'MobileOne arch dict has unknown keys {sorted(unknown)}; '
                             f'the fields are {sorted(names)}.')
        try:
            return MobileOneArch(**arch)
        except TypeError as e:
            raise ValueError(f'MobileOne arch dict {dict(arch)} is incomplete: {e}.') from None
    raise ValueError(f'MobileOne arch must be a name ({", ".join(ARCHS)}), a dict or a '
                     f'MobileOneArch, got {type(arch).__name__}.')


def stage_channels(arch: ArchLike, out_indices: Sequence[int] = (1, 2, 3, 4)) -> list[int]:
    """Channels of the stages ``out_indices`` of ``arch`` (0 is the stem, 4 the last stage).

    >>> stage_channels('s0', (3, 4))
    [256, 1024]
    """
    channels = get_arch(arch).channels
    return [channels[i] for i in out_indices]
