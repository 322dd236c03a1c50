"""LiteRT (TensorFlow Lite) on the CPU through ai-edge-litert's interpreter, with the XNNPACK
delegate that Android's CPU path uses: one ``.tflite`` file, named tensors in and out.

A node LiteRT cannot prepare or run ends in one sentence naming its op: LiteRT itself names
only the node, and for XNNPACK's node, which runs most of the model, not the op it refused."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ExportError

#: How LiteRT reports a node it cannot prepare or run ("Node number 141
#: (TfLiteXNNPackDelegate) failed to prepare."), after the kernel's own words.
_NODE_FAILURE = re.compile(r'Node number (\d+) \(([^)]*)\) failed to (\w+)')
#: XNNPACK's int8 convolution and fully connected operators refuse a requantization scale
#: (input scale x weight scale / output scale, per output channel) of this or more, and with
#: them the whole partition LiteRT handed to XNNPACK.
XNNPACK_MAX_REQUANTIZATION_SCALE = 256.0
#: The LiteRT ops that XNNPACK runs as those operators.
_WEIGHTED_OPS = ('CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED')


def _scales(interpreter, tensor: int) -> np.ndarray:
    return np.asarray(interpreter._get_tensor_details(tensor, 0)['quantization_parameters']
                      ['scales'], dtype=np.float64)


def _requantization_scale(interpreter, op: dict) -> float:
    """The largest requantization scale of an int8 conv or fully connected ``op`` (0 for
    any other op)."""
    if op['op_name'] not in _WEIGHTED_OPS or len(op['inputs']) < 2:
        return 0.0
    try:
        scales = [_scales(interpreter, t) for t in (op['inputs'][0], op['inputs'][1],
                                                    op['outputs'][0])]
    except ValueError:  # a tensor without details
        return 0.0
    if any(s.size == 0 for s in scales) or scales[2].min() <= 0:
        return 0.0  # float
    return float(scales[0].max() * scales[1].max() / scales[2].min())


def _covered_ops(ops: list, delegate: dict) -> list:
    """The ops that the delegate node ``delegate`` took over: those between its inputs and
    its outputs."""
    producer = {int(t): op for op in ops if op['op_name'] != 'DELEGATE' for t in op['outputs']}
    boundary = {int(t) for t in delegate['inputs']}
    covered, todo = {}, [int(t) for t in delegate['outputs']]
    while todo:
        op = producer.get(todo.pop())
        if op is None or op['index'] in covered:
            continue
        covered[op['index']] = op
        todo += [int(t) for t in op['inputs'] if t >= 0 and int(t) not in boundary]
    return [covered[i] for i in sorted(covered)]


def describe_failure(interpreter, node: int, kernel: str, stage: str) -> str:
    """The words for LiteRT's node ``node`` (run by ``kernel``) that failed to ``stage``
    (prepare, invoke): its op, from the interpreter's op details, and for an XNNPACK delegate
    node the op it took over that breaks XNNPACK's requantization limit, when one does."""
    ops = interpreter._get_ops_details()
    if not 0 <= node < len(ops):
        return f'{kernel} (node {node}) failed to {stage}'
    op = ops[node]
    delegated = op['op_name'] == 'DELEGATE'
    candidates = _covered_ops(ops, op) if delegated else [op]
    worst = max(candidates, key=lambda o: _requantization_scale(interpreter, o), default=None)
    ratio = _requantization_scale(interpreter, worst) if worst is not None else 0.0
    subject = f'{kernel} (node {node})' if delegated else f'{op["op_name"]} (node {node})'
    if ratio >= XNNPACK_MAX_REQUANTIZATION_SCALE:
        where = (f'{worst["op_name"]} (node {worst["index"]}, one of the {len(candidates)} ops '
                 f'it runs)' if delegated else 'it')
        return (f'{subject} failed to {stage} {where}: the requantization scale (input scale x '
                f'weight scale / output scale) is {ratio:.4g}, where XNNPACK takes less than '
                f'{XNNPACK_MAX_REQUANTIZATION_SCALE:.0f}')
    if delegated:
        kinds = ', '.join(sorted({o['op_name'] for o in candidates}))
        return f'{subject}, which runs {len(candidates)} ops ({kinds}), failed to {stage}'
    return f'{subject} failed to {stage}'


class LiteRTModel:
    """A ``.tflite`` model of :mod:`mobileone_dense.export.litert`: ``1xHxWx3`` float32 image
    in (channels last, as phones hold images), the network's outputs out, in the order of its
    signature (``output_0``, ``output_1``, ...).

    Args:
        path: The ``.tflite`` file.
        threads: The interpreter's threads (XNNPACK's thread pool); None: LiteRT's default.
    """
    runtime = 'LiteRT'

    def __init__(self, path: str | Path, threads: Optional[int] = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ExportError('Running a .tflite model needs the ai-edge-litert package: '
                              'make install (or pip install -e ".[deploy]").') from None
        self.path = Path(path)
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except ValueError as e:
            raise ExportError(f'{path} is not a LiteRT model that this interpreter can load '
                              f'({str(e).splitlines()[0]}): export it again with '
                              f'tools/export.py --format tflite.') from None
        try:  # XNNPACK takes its ops here: a refusal names the file, not a later run
            self.interpreter.allocate_tensors()
        except RuntimeError as e:
            raise self._refusal(e) from None
        signatures = self.interpreter.get_signature_list()
        self.signature = next(iter(signatures))
        io = signatures[self.signature]
        self.input_name = io['inputs'][0]
        # output_0, output_1, ..., output_10 in the order of the traced module's outputs
        self.output_names = sorted(io['outputs'], key=lambda n: int(n.rsplit('_', 1)[-1]))
        self.runner = self.interpreter.get_signature_runner(self.signature)
        details = self.runner.get_output_details()
        #: (scale, zero point) of each integer output that carries them: an INT8 file may end
        #: in a quantized tensor (MediaPipe dequantizes it; so does :meth:`__call__`).
        self.dequantize = {name: details[name]['quantization'] for name in self.output_names
                           if np.issubdtype(details[name]['dtype'], np.integer)
                           and details[name]['quantization'][0] > 0}
        shape = self.interpreter.get_input_details()[0]['shape']
        #: (H, W) of the image the model takes.
        self.input_size = (int(shape[1]), int(shape[2]))

    def _refusal(self, error: RuntimeError) -> Exception:
        """LiteRT's error for a node it cannot prepare or run, as one sentence naming the op;
        any other error as it is."""
        match = _NODE_FAILURE.search(str(error))
        if match is None:
            return error
        what = describe_failure(self.interpreter, int(match[1]), match[2], match[3])
        return ExportError(
            f'LiteRT cannot run {self.path.name}: {what}; export it again with tools/export.py, '
            f'whose INT8 calibration keeps every conv within XNNPACK\'s limits, and report this '
            f'with the config if that file fails too.')

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Run on a ``1x3xHxW`` float32 image (the layout of every other runtime here)."""
        nhwc = np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(0, 2, 3, 1))
        try:
            outputs = self.runner(**{self.input_name: nhwc})
        except RuntimeError as e:
            raise self._refusal(e) from None
        return [(outputs[name].astype(np.float32) - self.dequantize[name][1])
                * np.float32(self.dequantize[name][0]) if name in self.dequantize
                else outputs[name] for name in self.output_names]
