"""An exported LiteRT file run by MediaPipe Tasks, the client Android, iOS and web apps use:
``vision.ObjectDetector`` or ``vision.ImageSegmenter`` on the file as it is, with its metadata
(:mod:`mobileone_dense.export.litert_metadata`) and without any post-processing of ours.

:class:`MediaPipeModel` answers like :class:`~.evaluate.DeployedModel`, so that
``tools/test.py CONFIG model.tflite --client mediapipe`` scores MediaPipe's own detections
(its decoding, its best class per anchor, its NMS) or masks with the config's evaluator.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..apis import build_model
from ..errors import ExportError, UsageError
from ..export.litert_metadata import has_metadata
from ..tasks import task_of
from .evaluate import DeployedModel, dataset_meta


def _mediapipe():
    try:
        import mediapipe
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError:
        raise UsageError('Running a model in MediaPipe Tasks needs the mediapipe package: '
                         'make install (scripts/install.sh installs it).') from None
    return mediapipe, vision, BaseOptions


class MediaPipeModel(DeployedModel):
    """A ``.tflite`` of ``cfg``'s model run by MediaPipe Tasks (the module doc).

    Args:
        cfg: The config the file was exported from (its test settings: the detector's score
            threshold and detections per image become MediaPipe's options).
        path: A ``.tflite`` written by ``tools/export.py`` (it carries MediaPipe's metadata).
        threads: Unused: MediaPipe chooses its own.
    """
    runtime_name = 'MediaPipe Tasks'

    def __init__(self, cfg, path: str | Path, threads: Optional[int] = None) -> None:
        self.path = Path(path)
        mp, vision, options = _mediapipe()
        if self.path.suffix != '.tflite' or not self.path.is_file():
            raise UsageError(f'{path} is not a .tflite file: MediaPipe Tasks run the LiteRT '
                             f'files of tools/export.py --format tflite tflite-int8.')
        if not has_metadata(self.path):
            raise ExportError(f'{path} has no MediaPipe metadata, which MediaPipe Tasks need: '
                              f'export it again with tools/export.py (this version writes it).')
        self.task = task_of(cfg)
        self.model = build_model(cfg)
        self.classes = [str(c) for c in dataset_meta(cfg)['classes']]
        self._mp = mp
        base = options(model_asset_path=str(self.path))
        if self.task.name == 'detection':
            test_cfg = self.model.bbox_head.test_cfg
            self.client = vision.ObjectDetector.create_from_options(vision.ObjectDetectorOptions(
                base_options=base, score_threshold=float(test_cfg.get('score_thr', 0.0)),
                max_results=int(test_cfg.get('max_per_img', -1))))
        else:
            self.client = vision.ImageSegmenter.create_from_options(vision.ImageSegmenterOptions(
                base_options=base, output_category_mask=True, output_confidence_masks=True))

    def _label(self, category) -> int:
        """The class index of a MediaPipe category (it names the class, from the file's
        labels, and leaves the index out)."""
        if category.index is not None:
            return int(category.index)
        return self.classes.index(category.category_name)

    def close(self) -> None:
        """Release MediaPipe's graph (its own ``__del__`` fails at interpreter exit)."""
        if getattr(self, 'client', None) is not None:
            self.client.close()
            self.client = None

    def __del__(self):
        self.close()

    def picture(self, image):
        """``image`` as an app hands it to MediaPipe: an ``mp.Image`` of uint8 RGB, ``HxWx3``.

        Args:
            image: A BGR image, ``HxWx3`` (as ``mmcv.imread`` gives it) or the ``3xHxW``
                tensor a test pipeline yields.
        """
        hwc = image.detach().cpu().numpy().transpose(1, 2, 0) if isinstance(image, Tensor) \
            else np.asarray(image)
        rgb = np.ascontiguousarray(hwc[..., ::-1], dtype=np.uint8)
        return self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)

    def predict(self, image) -> list[Tensor]:
        """Final predictions in ``image``'s pixels, from MediaPipe's results.

        Args:
            image: As :meth:`picture` takes it; MediaPipe resizes it to the model's input.
        """
        picture = self.picture(image)
        size = (picture.height, picture.width)
        if self.task.name == 'detection':
            found = self.client.detect(picture).detections
            # MediaPipe reports whole pixels, origin and size each truncated: read the middle
            # of each interval (x1 in [x, x + 1), x2 in [x + w, x + w + 2)).
            boxes = [[d.bounding_box.origin_x + 0.5, d.bounding_box.origin_y + 0.5,
                      d.bounding_box.origin_x + d.bounding_box.width + 1,
                      d.bounding_box.origin_y + d.bounding_box.height + 1] for d in found]
            return [torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    torch.tensor([d.categories[0].score for d in found], dtype=torch.float32),
                    torch.tensor([self._label(d.categories[0]) for d in found], dtype=torch.long)]
        result = self.client.segment(picture)
        confidence = np.stack([m.numpy_view() for m in result.confidence_masks])
        category = result.category_mask.numpy_view().astype(np.int64)
        return [torch.from_numpy(confidence.reshape(1, -1, *size)).float(),
                torch.from_numpy(category.reshape(1, *size))]


__all__ = ['MediaPipeModel']
