"""Detection (mmdet, SSDLite): what building, exporting, checking, drawing and evaluating a
detector needs that a segmentor does not."""
from __future__ import annotations

import math
import os.path as osp
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..apis import drop_pretrained
from ..utils.safe_load import mmengine_checkpoints
from .base import Comparison, Task
from .detection_graph import DetectorGraph, DetectorNetwork, DetectorPostprocess


def match_detections(actual: Sequence, expected: Sequence, box_atol: float = 1e-2) -> dict:
    """Pair detections of two runs (boxes, scores, labels, by decreasing score).

    Each expected detection is paired with the unused actual one of the same label whose box
    is nearest (L-inf); a pair counts when the boxes are within ``box_atol`` pixels.
    """
    a_boxes, a_scores, a_labels = (torch.as_tensor(x) for x in actual)
    e_boxes, e_scores, e_labels = (torch.as_tensor(x) for x in expected)
    used = torch.zeros(len(a_boxes), dtype=torch.bool)
    matched, box_diff, score_diff = 0, 0.0, 0.0
    for box, score, label in zip(e_boxes, e_scores, e_labels):
        candidates = (~used) & (a_labels == label)
        if not candidates.any():
            continue
        dist = (a_boxes - box).abs().amax(dim=1).masked_fill(~candidates, math.inf)
        j = int(dist.argmin())
        if dist[j] <= box_atol:
            used[j] = True
            matched += 1
            box_diff = max(box_diff, float(dist[j]))
            score_diff = max(score_diff, float((a_scores[j] - score).abs()))
    return dict(expected=len(e_boxes), actual=len(a_boxes), matched=matched,
                max_box_diff=box_diff, max_score_diff=score_diff,
                ok=matched == len(e_boxes) == len(a_boxes))


def describe_detections(m: dict) -> str:
    return (f'{m["matched"]} of {m["expected"]} detections matched ({m["actual"]} found), '
            f'max box diff {m["max_box_diff"]:.2e} px, max score diff '
            f'{m["max_score_diff"]:.2e}: {"OK" if m["ok"] else "MISMATCH"}')


class DetectionTask(Task):
    name = 'detection'
    scope = 'mmdet'
    output_names = ('boxes', 'scores', 'labels')
    network_output_names = ('boxes', 'scores')  # 1xAx4 decoded boxes, 1xAxC class scores

    def data_sample(self, metainfo: dict):
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=metainfo)

    def export_wrapper(self, model: nn.Module, input_size: Sequence[int]) -> nn.Module:
        return DetectorGraph(model, input_size).eval()

    def network(self, model: nn.Module, input_size: Sequence[int], app: bool = False
                ) -> nn.Module:
        return DetectorNetwork(model, input_size, app).eval()

    def from_app_outputs(self, outputs: Sequence, model: nn.Module,
                         input_size: Sequence[int]) -> list[Tensor]:
        centres, scores = (torch.as_tensor(np.asarray(o)) for o in outputs[:2])
        h, w = input_size
        cy, cx, bh, bw = (centres * centres.new_tensor([h, w, h, w])).unbind(-1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        return [boxes, scores]

    def postprocessor(self, model: nn.Module, input_size: Sequence[int]):
        """mmdet's selection and class-wise NMS (:class:`DetectorPostprocess`), in PyTorch, on
        one thread: its work is serial (top-k, NMS), and a second thread costs the network that
        runs next, because PyTorch's idle OpenMP worker keeps spinning on the core it needs."""
        post = DetectorPostprocess(model.bbox_head,
                                   DetectorNetwork(model, input_size).level_anchors).eval()

        def run(outputs: Sequence) -> list[Tensor]:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.no_grad():
                    return list(post(*(torch.as_tensor(o) for o in outputs[:2])))
            finally:
                torch.set_num_threads(threads)
        return run

    def predictions(self, model: nn.Module, image: Tensor) -> list[Tensor]:
        inputs, samples = self.preprocess(model, image)
        with torch.no_grad():
            pred = model.predict(inputs, samples)[0].pred_instances
        return [pred.bboxes, pred.scores, pred.labels]

    def compare_predictions(self, actual: Sequence, expected: Sequence, rtol: float,
                            input_size: Sequence[int]) -> Comparison:
        """Detections match one to one, boxes within ``rtol`` of the input size (at least
        0.01 px)."""
        m = match_detections(actual, expected, box_atol=max(1e-2, rtol * max(input_size)))
        return Comparison(m['ok'], describe_detections(m), m)

    def dump_metric(self, out_file: str):
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out_file)

    def show_predictions(self, cfg, show_dir: str) -> None:
        cfg.default_hooks.visualization['draw'] = True
        cfg.default_hooks.visualization['test_out_dir'] = osp.abspath(show_dir)

    def inferencer(self, cfg, checkpoint: str, device: str):
        from mmdet.apis import inference_detector, init_detector
        drop_pretrained(cfg)
        with mmengine_checkpoints():
            model = init_detector(cfg, checkpoint, device=device)
        return model, self.visualizer(model.dataset_meta), \
            lambda img: inference_detector(model, img)

    def summary(self, result, classes: Sequence[str], score_thr: float) -> str:
        keep = result.pred_instances.scores >= score_thr
        labels = result.pred_instances.labels[keep].tolist()
        counts = {classes[i]: labels.count(i) for i in sorted(set(labels))}
        return ', '.join(f'{n} {c}' for c, n in counts.items()) or 'no boxes'

    def draw_kwargs(self, score_thr: float) -> dict:
        return dict(pred_score_thr=score_thr)

    def visualizer(self, dataset_meta: dict):
        from mmdet.visualization import DetLocalVisualizer
        visualizer = DetLocalVisualizer(name='image_demo')
        visualizer.dataset_meta = dataset_meta
        return visualizer

    def rescale_predictions(self, predictions, from_size, to_size, model):
        """Boxes scaled by the ratio of the sizes along each axis."""
        boxes, scores, labels = (torch.as_tensor(p) for p in predictions)
        (fh, fw), (th, tw) = from_size, to_size
        if (fh, fw) != (th, tw):
            boxes = boxes * boxes.new_tensor([tw / fw, th / fh] * 2)
        return [boxes, scores, labels]

    def deployed_sample(self, predictions, sample, model):
        """``pred_instances`` with the boxes divided by the sample's ``scale_factor``, as mmdet's
        ``_bbox_post_process`` rescales them; ground-truth boxes as plain tensors, as mmdet's
        data preprocessor leaves them."""
        from mmdet.models.utils import samplelist_boxtype2tensor
        from mmengine.structures import InstanceData
        sample = self.data_sample(sample) if isinstance(sample, dict) else sample
        samplelist_boxtype2tensor([sample])
        boxes, scores, labels = (torch.as_tensor(p) for p in predictions)
        scale = sample.metainfo.get('scale_factor')
        if scale is not None:
            boxes = boxes * boxes.new_tensor([1 / s for s in scale] * 2)
        sample.pred_instances = InstanceData(bboxes=boxes.float(), scores=scores.float(),
                                             labels=labels.long())
        return sample
