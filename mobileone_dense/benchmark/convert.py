"""The latency benchmark's converted files: ONNX, LiteRT FP32 and LiteRT INT8 of each deployed
network, written by the export's own writers and cached under the work dir, keyed by a
fingerprint of the weights, the input size, the writers' code and the calibration, so that a
rerun converts nothing that did not change."""
from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path

from ..export import graph, litert, onnx
from ..export.numerics import make_image
from .models import Model

#: The converted file of each runtime, after the model's key.
SUFFIXES = {'onnx': '.onnx', 'litert': '.tflite', 'litert_int8': '_int8.tflite'}


def fingerprint(model: Model, calib: int) -> str:
    """A hash of the deployed network's weights and buffers, its input size, the source of the
    modules that decide the files' content, and the calibration."""
    h = hashlib.sha1(f'{type(model.network).__name__} {model.size} {calib}'.encode())
    h.update(''.join(inspect.getsource(m) for m in (graph, litert, onnx)).encode())
    for name, tensor in model.network.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def convert(model: Model, runtimes, work_dir: Path, calib: int,
            reconvert: bool = False) -> dict[str, Path]:
    """The converted files of ``model`` for each of ``runtimes`` that needs one (cached, see
    the module doc); prints one line."""
    network, image, size = model.network, model.image, (model.size, model.size)
    writers = {
        'onnx': lambda p: onnx.export_onnx(network, image, p),
        'litert': lambda p: litert.write_tflite(network, image, p),
        'litert_int8': lambda p: litert.write_tflite(
            network, image, p, calibration=[make_image(size, s) for s in range(1, calib + 1)])}
    work_dir.mkdir(parents=True, exist_ok=True)
    record_path = work_dir / f'{model.key}.json'
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    stamp = fingerprint(model, calib)
    paths, done = {}, []
    for runtime in [r for r in runtimes if r in writers]:
        path = paths[runtime] = work_dir / f'{model.key}{SUFFIXES[runtime]}'
        if not reconvert and path.is_file() and record.get(runtime) == stamp:
            done.append(f'{runtime} cached')
            continue
        start = time.perf_counter()
        writers[runtime](path)
        done.append(f'{runtime} {time.perf_counter() - start:.0f} s')
        record[runtime] = stamp
        record_path.write_text(json.dumps(record, indent=1))
    print(f'  {model.group} {model.name}: {", ".join(done) or "nothing to convert"}', flush=True)
    return paths
