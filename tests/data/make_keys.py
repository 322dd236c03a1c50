"""Writes tests/data/keys/{variant}_{unfused,fused}.txt from the Apple-structured reference.

Run once: python tests/data/make_keys.py (the files are committed; tests only read them).
"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from reference_apple import VARIANTS, AppleMobileOne  # noqa: E402

for variant in VARIANTS:
    for fused in (False, True):
        keys = [k for k in AppleMobileOne(variant, inference_mode=fused).state_dict()
                if not k.startswith('linear.')]
        out = here / 'keys' / f'{variant}_{"fused" if fused else "unfused"}.txt'
        out.write_text('\n'.join(keys) + '\n')
        print(out, len(keys))
