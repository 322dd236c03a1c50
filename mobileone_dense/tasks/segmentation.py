"""Segmentation (mmseg, DeepLabV3): what building, exporting, checking, drawing and evaluating a
segmentor needs that a detector does not."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..apis import drop_pretrained
from ..export.numerics import compare
from .base import Comparison, Task

#: Share of pixels whose class must agree between two renderings of one segmentor (ties of
#: nearly equal logits may flip a few).
PIXEL_AGREEMENT = 0.999


class SegmentationTask(Task):
    name = 'segmentation'
    scope = 'mmseg'
    output_names = ('seg_logits', 'seg_map')
    network_output_names = output_names  # the network is the whole graph

    def data_sample(self, metainfo: dict):
        from mmseg.structures import SegDataSample
        return SegDataSample(metainfo=metainfo)

    def default_input_size(self, cfg) -> tuple[int, int]:
        """The crop size (the data preprocessor's ``size`` or ``crop_size``), else the test
        pipeline's fixed-size ``Resize``."""
        size = cfg.model.get('data_preprocessor', {}).get('size') or cfg.get('crop_size')
        if size:
            return int(size[0]), int(size[1])
        return super().default_input_size(cfg)

    def export_wrapper(self, model: nn.Module, input_size: Sequence[int]) -> nn.Module:
        from ..export.graph import SegmentorGraph
        return SegmentorGraph(model).eval()

    def network(self, model: nn.Module, input_size: Sequence[int]) -> nn.Module:
        return self.export_wrapper(model, input_size)

    def postprocessor(self, model: nn.Module, input_size: Sequence[int]):
        return lambda outputs: [torch.as_tensor(o) for o in outputs]

    def predictions(self, model: nn.Module, image: Tensor) -> list[Tensor]:
        inputs, samples = self.preprocess(model, image)
        with torch.no_grad():
            result = model.predict(inputs, samples)[0]
        return [result.seg_logits.data[None], result.pred_sem_seg.data.long()]

    def compare_predictions(self, actual: Sequence, expected: Sequence, rtol: float,
                            input_size: Sequence[int]) -> Comparison:
        """Logits within ``rtol`` and at least :data:`PIXEL_AGREEMENT` of the class map equal."""
        logits = compare([actual[0]], [expected[0]], rtol)
        pixels = float((torch.as_tensor(actual[1]) == torch.as_tensor(expected[1]))
                       .double().mean())
        ok = logits.ok and pixels >= PIXEL_AGREEMENT
        return Comparison(ok, f'logits {logits}; class map {100 * pixels:.3f}% of pixels equal',
                          dict(logits=vars(logits), seg_map_agreement=pixels))

    def dump_metric(self, out_file: str):
        from mmengine.evaluator import DumpResults
        return DumpResults(out_file_path=out_file)

    def show_predictions(self, cfg, show_dir: str) -> None:
        # SegVisualizationHook saves through the visualizer's save_dir
        cfg.default_hooks.visualization['draw'] = True
        cfg.default_hooks.visualization['interval'] = 1
        cfg.visualizer['save_dir'] = show_dir

    def inferencer(self, cfg, checkpoint: str, device: str):
        from mmseg.apis import inference_model, init_model
        from mmseg.visualization import SegLocalVisualizer
        drop_pretrained(cfg)
        model = init_model(cfg, checkpoint, device=device)
        meta = model.dataset_meta
        visualizer = SegLocalVisualizer(name='image_demo', alpha=0.5)
        visualizer.set_dataset_meta(classes=meta['classes'], palette=meta.get('palette'))
        return model, visualizer, lambda img: inference_model(model, img)

    def summary(self, result, classes: Sequence[str], score_thr: float) -> str:
        present = result.pred_sem_seg.data.unique().tolist()
        return 'classes ' + ', '.join(classes[i] for i in present if i < len(classes))
