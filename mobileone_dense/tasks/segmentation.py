"""Segmentation (mmseg, DeepLabV3): what building, exporting, checking, drawing and evaluating a
segmentor needs that a detector does not."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..apis import drop_pretrained
from ..errors import ExportError
from ..export.graph import NetworkCore
from ..export.numerics import compare
from ..utils.safe_load import mmengine_checkpoints
from .base import Comparison, Task

#: Share of pixels whose class must agree between two renderings of one segmentor (ties of
#: nearly equal logits may flip a few).
PIXEL_AGREEMENT = 0.999


class SegmentorGraph(nn.Module):
    """An encoder-decoder segmentor, whole-image inference.

    Input ``image``: float32 ``1x3xHxW``, 0..255, channels as mmcv loads them (BGR). Outputs
    ``seg_logits`` (``1xCxHxW``, the decode head's logits resized to the input, as mmseg's
    ``predict``) and ``seg_map``
    (``1xHxW`` int64 class indices: argmax, or the sigmoid threshold of a one-channel head).
    With ``app=True`` (the LiteRT files, which MediaPipe's ImageSegmenter runs) the image is
    RGB and the one output is the logits channels-last (``1xHxWxC``), from which MediaPipe
    makes its category and confidence masks.
    """

    def __init__(self, segmentor: nn.Module, app: bool = False) -> None:
        super().__init__()
        if not hasattr(segmentor, 'decode_head') or not hasattr(segmentor, 'extract_feat'):
            raise ExportError(f'Export handles encoder-decoder segmentors; '
                              f'{type(segmentor).__name__} is not one: export with no --format.')
        head = segmentor.decode_head
        self.core = NetworkCore(segmentor, 'decode_head', rgb_input=app)
        self.align_corners = head.align_corners
        self.threshold = getattr(head, 'threshold', None)
        self.app = app

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        # mmseg's resize is this interpolation (plus a warning about odd sizes)
        logits = F.interpolate(self.core(image), size=image.shape[2:], mode='bilinear',
                               align_corners=self.align_corners)
        if self.app:
            return (logits.permute(0, 2, 3, 1), )
        return logits, classify(logits, self.threshold)


def classify(logits: Tensor, threshold: Optional[float]) -> Tensor:
    """The class map of ``1xCxHxW`` logits: argmax, or the sigmoid threshold of one channel."""
    if logits.shape[1] > 1:
        return logits.argmax(dim=1)
    return (logits.sigmoid() > threshold)[:, 0].long()


class SegmentationTask(Task):
    name = 'segmentation'
    scope = 'mmseg'
    output_names = ('seg_logits', 'seg_map')
    network_output_names = output_names  # the network is the whole graph

    def data_sample(self, metainfo: dict):
        from mmseg.structures import SegDataSample
        return SegDataSample(metainfo=metainfo)

    def default_input_size(self, cfg) -> tuple[int, int]:
        """The size the test pipeline feeds a square image at (a ``Resize`` to a square scale,
        e.g. the demo's 256x256 scenes), else the crop size (the data preprocessor's ``size`` or
        ``crop_size``: 512x512 for the VOC and ADE20k configs), else the test pipeline's
        fixed-size ``Resize``. A model exported at its training crop but tested on larger
        images loses resolution, and with it mIoU."""
        pipeline = cfg.get('test_pipeline') or cfg.get('test_dataloader', {}).get(
            'dataset', {}).get('pipeline', [])
        for step in pipeline:
            scale = step.get('scale') if step.get('type') == 'Resize' else None
            if isinstance(scale, int) or (scale and len(scale) == 2 and scale[0] == scale[1]):
                side = scale if isinstance(scale, int) else scale[0]
                return int(side), int(side)
        size = cfg.model.get('data_preprocessor', {}).get('size') or cfg.get('crop_size')
        if size:
            return int(size[0]), int(size[1])
        return super().default_input_size(cfg)

    def export_wrapper(self, model: nn.Module, input_size: Sequence[int]) -> nn.Module:
        return SegmentorGraph(model).eval()

    def network(self, model: nn.Module, input_size: Sequence[int], app: bool = False
                ) -> nn.Module:
        return SegmentorGraph(model, app).eval()

    def from_app_outputs(self, outputs: Sequence, model: nn.Module,
                         input_size: Sequence[int]) -> list[Tensor]:
        logits = torch.as_tensor(np.asarray(outputs[0])).permute(0, 3, 1, 2)
        return [logits, classify(logits, getattr(model.decode_head, 'threshold', None))]

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
        drop_pretrained(cfg)
        with mmengine_checkpoints():
            model = init_model(cfg, checkpoint, device=device)
        return model, self.visualizer(model.dataset_meta), \
            lambda img: inference_model(model, img)

    def summary(self, result, classes: Sequence[str], score_thr: float) -> str:
        present = result.pred_sem_seg.data.unique().tolist()
        return 'classes ' + ', '.join(classes[i] for i in present if i < len(classes))

    def visualizer(self, dataset_meta: dict):
        """mmseg's visualizer; classes without a palette get the colours mmseg's datasets give
        them (random, seed 42)."""
        from mmseg.visualization import SegLocalVisualizer
        classes, palette = dataset_meta['classes'], dataset_meta.get('palette')
        if not palette or len(palette) != len(classes):
            palette = np.random.RandomState(42).randint(0, 255, (len(classes), 3)).tolist()
        visualizer = SegLocalVisualizer(name='image_demo', alpha=0.5)
        visualizer.set_dataset_meta(classes=classes, palette=palette)
        return visualizer

    def rescale_predictions(self, predictions, from_size, to_size, model):
        """Logits resized bilinearly (the model's ``align_corners``), then classified again."""
        logits, seg_map = (torch.as_tensor(p) for p in predictions[:2])
        if tuple(logits.shape[-2:]) == tuple(to_size):
            return [logits, seg_map]
        logits = F.interpolate(logits.float(), size=tuple(int(s) for s in to_size),
                               mode='bilinear', align_corners=model.decode_head.align_corners)
        return [logits, classify(logits, getattr(model.decode_head, 'threshold', None))]

    def deployed_sample(self, predictions, sample, model):
        """``seg_logits`` and ``pred_sem_seg`` at ``ori_shape``, as mmseg's
        ``postprocess_result`` leaves them."""
        from mmengine.structures import PixelData
        sample = self.data_sample(sample) if isinstance(sample, dict) else sample
        logits = torch.as_tensor(predictions[0])
        size = sample.metainfo.get('ori_shape') or tuple(logits.shape[-2:])
        logits, seg_map = self.rescale_predictions(predictions, logits.shape[-2:], size[:2],
                                                   model)
        logits = logits[0] if logits.shape[1] > 1 else logits[0].sigmoid()
        sample.set_data(dict(seg_logits=PixelData(data=logits),
                             pred_sem_seg=PixelData(data=seg_map[:1].long())))
        return sample
