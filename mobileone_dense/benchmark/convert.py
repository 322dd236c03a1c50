"""The latency benchmark's converted files: ONNX, LiteRT FP32 and LiteRT INT8 of each deployed
network, and for a detector the LiteRT files MediaPipe Tasks run (its ``app=True`` form with
MediaPipe's metadata, as ``tools/export.py`` writes them), all by the export's own writers,
cached under the work dir and keyed by a fingerprint of the weights, the input size, the
writers' and the network's code and the calibration, so that a rerun converts nothing that did
not change."""
from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path

from ..export import graph, litert, litert_metadata, onnx
from ..export.numerics import make_image
from .models import Model

#: The converted file of each runtime, after the model's key.
SUFFIXES = {'onnx': '.onnx', 'litert': '.tflite', 'litert_int8': '_int8.tflite',
            'mediapipe': '_app.tflite', 'mediapipe_int8': '_app_int8.tflite'}


def fingerprint(model: Model, calib: int) -> str:
    """A hash of the deployed network's weights and buffers, its input size, the source of the
    modules that decide the files' content (the network's own among them), and the
    calibration."""
    h = hashlib.sha1(f'{type(model.network).__name__} {model.size} {calib}'.encode())
    modules = (graph, litert, litert_metadata, onnx, inspect.getmodule(type(model.network)))
    h.update(''.join(inspect.getsource(m) for m in modules).encode())
    for name, tensor in model.network.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def write_app(model: Model, path: Path, calibration=None) -> None:
    """``model``'s app form in LiteRT with MediaPipe's metadata (labels ``0..N-1``: the weights
    are random anyway)."""
    app = model.app_network()
    litert.write_tflite(app, model.image.flip(1), path, calibration)  # RGB in
    litert_metadata.write_metadata(path, 'detection', [str(i) for i in range(app.num_classes)])


def convert(model: Model, runtimes, work_dir: Path, calib: int,
            reconvert: bool = False) -> dict[str, Path]:
    """The converted files of ``model`` for each of ``runtimes`` that needs one (cached, see
    the module doc); prints one line. MediaPipe's files (``mediapipe*``): detectors only."""
    network, image = model.network, model.image
    images = [make_image((model.size, model.size), s) for s in range(1, calib + 1)]
    writers = {
        'onnx': lambda p: onnx.export_onnx(network, image, p),
        'litert': lambda p: litert.write_tflite(network, image, p),
        'litert_int8': lambda p: litert.write_tflite(network, image, p, calibration=images),
        'mediapipe': lambda p: write_app(model, p),
        'mediapipe_int8': lambda p: write_app(model, p, [i.flip(1) for i in images])}
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
