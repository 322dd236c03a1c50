"""What the export benchmark times: each model in its three forms (train-time and fused in
PyTorch, fused in ONNX Runtime) with its parameters and MACs, grouped by input, and the sgemm
that measures the machine's peak."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .. import apis
from ..export.fusion import fuse
from ..export.onnx import export_onnx
from ..models import MobileOne
from ..runtimes.onnxruntime import ort_session
from ..tasks import task_of
from .common import SEG_OPTIONS, num_params
from .macs import count_image_macs, count_macs

PEER = apis.PEER_NAME
PEAK_NAMES = ('sgemm torch', 'sgemm onnx')
#: The groups of whole models (raw image in, final predictions out), by the task they run.
DENSE_GROUPS = {'ssdlite': 'detection', 'deeplabv3': 'segmentation'}
#: Groups whose calls take long enough (about a second) to need one warmup and settling call.
LONG_CALL_GROUPS = ('deeplabv3', )


class Entry:
    """One model in its three forms: train-time and fused in PyTorch, fused in ONNX Runtime.

    ``reparam=False`` (a MobileNetV2 peer): nothing to fuse, so ``train`` is not timed.
    """

    def __init__(self, group: str, name: str, train: nn.Module, fused: nn.Module,
                 image: torch.Tensor, onnx_path: Path, ort_options: dict,
                 reparam: bool = True) -> None:
        self.group, self.name, self.reparam = group, name, reparam
        self.image, self.array = image, image.numpy()
        self.params_train, self.params_fused = num_params(train), num_params(fused)
        self.macs_train = count_macs(train, image)
        self.macs_fused = count_macs(fused, image) if reparam else self.macs_train
        self.macs_image = count_image_macs(fused, image)
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(fused, image, onnx_path)
        self.session = ort_session(onnx_path, **ort_options)
        self.fns: dict[str, Callable[[], object]] = {}
        if reparam:
            self.fns[f'{name} train'] = lambda: train(image)
        self.fns[f'{name} fused'] = lambda: fused(image)
        self.fns[f'{name} onnx'] = lambda: self.session.run(None, {'image': self.array})


@dataclass
class Group:
    """Models timed in one interleaved run, on one input size.

    ``long_calls``: a group of :data:`LONG_CALL_GROUPS`.
    """
    name: str
    entries: list[Entry]
    rounds: int
    size: int
    long_calls: bool = False


def _onnx_path(work_dir: Path, group: str, name: str) -> Path:
    return Path(work_dir) / f'{group}_{"mnv2" if name == PEER else name}.onnx'


def backbone_group(variants: Sequence[str], size: int, rounds: int, work_dir: Path,
                   ort_options: dict) -> Group:
    """MobileOne backbones (stage4 output) and mmdet's MobileNetV2 on a random image."""
    image = torch.rand(1, 3, size, size)
    entries = []
    for v in variants:
        train = MobileOne(v, out_indices=(4, )).eval()
        entries.append(Entry('backbone', v, train, fuse(train), image,
                             _onnx_path(work_dir, 'backbone', v), ort_options))
    mnv2 = apis.mobilenet_v2_backbone()
    entries.append(Entry('backbone', PEER, mnv2, mnv2, image,
                         _onnx_path(work_dir, 'backbone', PEER), ort_options, reparam=False))
    return Group('backbone', entries, rounds, size)


def dense_group(group: str, variants: Sequence[str], size: int, rounds: int, work_dir: Path,
                ort_options: dict) -> Group:
    """SSDLite or DeepLabV3 (:data:`DENSE_GROUPS`), MobileOne variants then the MobileNetV2
    peer, each as its export graph (:meth:`~mobileone_dense.tasks.Task.export_wrapper`) on a
    random 0..255 image."""
    task = DENSE_GROUPS[group]
    options = SEG_OPTIONS if task == 'segmentation' else None
    configs = {v: apis.mobileone_config(task, v, options) for v in variants}
    configs[PEER] = apis.peer_config(task, options)
    image = (torch.rand(1, 3, size, size) * 255).round()
    entries = []
    for name, cfg in configs.items():
        wrap = task_of(cfg).export_wrapper
        model, reparam = apis.build_model(cfg), name != PEER
        train = wrap(model, (size, size))
        fused = wrap(fuse(model), (size, size)) if reparam else train
        entries.append(Entry(group, name, train, fused, image,
                             _onnx_path(work_dir, group, name), ort_options, reparam=reparam))
    return Group(group, entries, rounds, size, long_calls=group in LONG_CALL_GROUPS)


def _sgemm_onnx(n: int, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper
    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in 'ABC']
    graph = helper.make_graph([helper.make_node('MatMul', ['A', 'B'], ['C'])], 'sgemm',
                              spec[:2], spec[2:])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                                ir_version=8), str(path))
    return path


def peak_fns(n: int, work_dir: Path, ort_options: dict) -> dict[str, Callable[[], object]]:
    """An ``n x n`` sgemm in PyTorch and in ONNX Runtime (:data:`PEAK_NAMES`)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    an, bn = a.numpy(), b.numpy()
    session = ort_session(_sgemm_onnx(n, Path(work_dir) / f'sgemm_{n}.onnx'), **ort_options)
    return dict(zip(PEAK_NAMES, (lambda: torch.mm(a, b),
                                 lambda: session.run(None, {'A': an, 'B': bn}))))
