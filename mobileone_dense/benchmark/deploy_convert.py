"""The deploy benchmark's converted files: ONNX, LiteRT FP32 and LiteRT INT8 of each model,
cached under ``--work-dir`` and keyed by model, input size and a fingerprint of the weights, of
the code that writes them (a change there converts again) and of the INT8 calibration, so that
a rerun converts nothing.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Callable

from torch import nn

from ..export.numerics import make_image
from .deploy_models import RUNTIME_LABELS, Model

#: The converted file of each runtime, after the model's key.
SUFFIXES = {'onnx': '.onnx', 'litert': '.tflite', 'litert_int8': '_int8.tflite'}


def writers_source() -> str:
    """The source of what decides the converted files' content: the network wrappers of
    ``export/graph.py`` and the normalisation fold, and the ONNX and LiteRT writers (not the
    detector post-processing, which runs in PyTorch after them)."""
    from ..export import graph, litert, onnx
    pieces = (graph.Normalize, graph.NetworkCore, graph.DetectorNetwork, graph.SegmentorGraph,
              graph.fold_normalization, litert, onnx)
    return '\n'.join(inspect.getsource(piece) for piece in pieces)


def fingerprint(network: nn.Module, size: int) -> str:
    """A hash of the network's class, weights and buffers, the input size and
    :func:`writers_source`."""
    h = hashlib.sha1(f'{type(network).__name__} {size}'.encode())
    h.update(writers_source().encode())
    for name, tensor in network.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def cached_files(key: str, stamps: dict[str, str], writers: dict[str, Callable[[Path], object]],
                 work_dir: Path, reconvert: bool = False) -> tuple[dict[str, Path], dict]:
    """The converted files of one model: ``work_dir/<key><suffix>`` per runtime of ``writers``,
    reused when the record ``work_dir/<key>.json`` holds the same stamp for it (and the file is
    there), else written by ``writers[runtime](path)``.

    Returns the paths and, per runtime, whether it was reused and how long writing took.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    record_path = work_dir / f'{key}.json'
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    paths, info = {}, {}
    for runtime, write in writers.items():
        path = paths[runtime] = work_dir / f'{key}{SUFFIXES[runtime]}'
        if not reconvert and path.is_file() and record.get(runtime) == stamps[runtime]:
            info[runtime] = dict(reused=True)
            continue
        record.pop(runtime, None)
        start = time.perf_counter()
        write(path)
        info[runtime] = dict(reused=False, seconds=time.perf_counter() - start)
        record[runtime] = stamps[runtime]
        record_path.write_text(json.dumps(record, indent=1))
    return paths, info


def convert(model: Model, work_dir: Path, calib: int, reconvert: bool) -> dict[str, Path]:
    """ONNX, LiteRT FP32 and LiteRT INT8 files of ``model`` (cached); prints one line."""
    from ..export.litert import write_tflite
    from ..export.onnx import export_onnx
    stamp = fingerprint(model.network, model.size)
    image, network, size = model.image, model.network, (model.size, model.size)
    calibration = [make_image(size, seed) for seed in range(1, calib + 1)]
    writers = {
        'onnx': lambda p: export_onnx(network, image, p),
        'litert': lambda p: write_tflite(network, image, p),
        'litert_int8': lambda p: write_tflite(network, image, p, calibration=calibration)}
    stamps = {'onnx': stamp, 'litert': stamp, 'litert_int8': f'{stamp} calib {calib}'}
    paths, info = cached_files(model.key, stamps, writers, Path(work_dir), reconvert)
    done = ', '.join(f'{RUNTIME_LABELS[r]} ' + ('cached' if i['reused'] else
                                                  f'{i["seconds"]:.0f} s')
                     for r, i in info.items())
    print(f'  {model.group} {model.name} at {model.size}: {done}', flush=True)
    return paths
