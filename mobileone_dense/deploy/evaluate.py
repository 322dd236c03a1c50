"""An exported model (``.onnx``, ``.tflite``) used like a checkpoint: predictions in an image's own
pixels, the data samples of the package's own ``predict``, and the config's evaluation.

:class:`DeployedModel` runs the file in its runtime (:func:`~mobileone_dense.runtimes.open_model`)
at the fixed input size it was exported with, adds what the file leaves out (a ``.tflite``
detector ends at per-anchor boxes and scores; the config's model supplies mmdet's selection and
NMS) and maps the predictions back to the image it was given. :func:`evaluate_deployed` runs it
over the config's test set and scores it with the config's own evaluator (``tools/test.py
CONFIG MODEL.tflite``), so each format's accuracy is measured the way a checkpoint's is.
"""
from __future__ import annotations

import os.path as osp
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..apis import build_model
from ..datasets import check_datasets, leaf_datasets, reading_annotations
from ..errors import ConfigError, ExportError
from ..export.litert_metadata import has_metadata
from ..runtimes import open_model
from ..tasks import task_of
from ..transforms import use_checked_image_loading

#: Suffixes of exported models: what :func:`is_exported` routes away from checkpoint loading
#: (``.mlpackage`` so that it gets its own sentence from
#: :func:`~mobileone_dense.runtimes.open_model`).
EXPORTED_SUFFIXES = ('.onnx', '.tflite', '.mlpackage')


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` names an exported model rather than a PyTorch checkpoint."""
    return Path(str(path).rstrip('/')).suffix.lower() in EXPORTED_SUFFIXES


def _shapes(arrays) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in np.shape(a)) for a in arrays]


class DeployedModel:
    """An exported model of ``cfg``'s model, predicting in the pixels of the image it is given.

    Args:
        cfg: The config the model was exported from (its model is built once, without
            weights, for the post-processing settings and the output shapes; the file's
            outputs on a blank image are checked against them).
        path: The ``.onnx`` or ``.tflite`` file.
        threads: The runtime's threads (None: the runtime's default).

    Raises:
        UsageError, ExportError: One sentence for a missing, unknown or unloadable file, or a
            file whose outputs do not fit the config's model.
    """

    def __init__(self, cfg, path: str | Path, threads: Optional[int] = None) -> None:
        self.path = Path(path)
        self.task = task_of(cfg)
        self.runtime = open_model(path, threads)
        #: A LiteRT file with MediaPipe's metadata holds the network's app form: RGB in,
        #: MediaPipe's outputs out (:meth:`~mobileone_dense.tasks.base.Task.network`).
        self.app = self.path.suffix == '.tflite' and has_metadata(self.path)
        #: (H, W) of the image the exported model takes.
        self.input_size = tuple(int(s) for s in self.runtime.input_size)
        self.model = build_model(cfg)
        self.postprocess = self.task.postprocessor(self.model, self.input_size)
        with torch.no_grad():
            zeros = torch.zeros(1, 3, *self.input_size)
            reference = self.task.network(self.model, self.input_size)(zeros)
            app = (self.task.network(self.model, self.input_size, app=True)(zeros) if self.app
                   else reference)
        #: Shapes of the network's outputs at the input size: what a file without the
        #: post-processing must give (:attr:`app_shapes` in the form the LiteRT files hold).
        self.network_shapes, self.app_shapes = _shapes(reference), _shapes(app)
        # A file of another config (or task) fails here, in one sentence, not mid-evaluation.
        self._finish(self.runtime(np.zeros((1, 3, *self.input_size), np.float32)))

    @property
    def runtime_name(self) -> str:
        return self.runtime.runtime

    def _finish(self, outputs: Sequence) -> list[Tensor]:
        """The final predictions from the file's outputs: the network's (post-processing
        added) or already final (an ONNX detector holds its NMS)."""
        if self.app and _shapes(outputs) == self.app_shapes:
            outputs = self.task.from_app_outputs(outputs, self.model, self.input_size)
        task, shapes = self.task, _shapes(outputs)
        if len(outputs) == len(task.network_output_names) and shapes == self.network_shapes:
            return [torch.as_tensor(o) for o in self.postprocess(outputs)]
        if len(outputs) == len(task.output_names) != len(task.network_output_names):
            return [torch.as_tensor(np.asarray(o)) for o in outputs]
        raise ExportError(
            f'{self.path} outputs arrays of shapes {shapes}, but the config\'s {task.name} model '
            f'at {self.input_size[0]}x{self.input_size[1]} gives '
            f'{self.app_shapes if self.app else self.network_shapes}: pass the config the model '
            f'was exported from.')

    def predict(self, image) -> list[Tensor]:
        """Final predictions (the task's ``output_names``) in ``image``'s own pixels.

        Args:
            image: A BGR uint8 image, ``HxWx3`` (as ``mmcv.imread`` gives it) or the ``3xHxW``
                tensor a test pipeline yields. One of another size than the model's is resized
                to it (``mmcv.imresize``, bilinear) and the predictions are mapped back.
        """
        import mmcv
        if isinstance(image, Tensor):
            chw = image.detach().cpu().numpy()
            size = tuple(chw.shape[1:])
            if size != self.input_size:
                chw = mmcv.imresize(chw.transpose(1, 2, 0), self.input_size[::-1],
                                    interpolation='bilinear').transpose(2, 0, 1)
        else:
            hwc = np.asarray(image)
            size = tuple(hwc.shape[:2])
            if size != self.input_size:
                hwc = mmcv.imresize(hwc, self.input_size[::-1], interpolation='bilinear')
            chw = hwc.transpose(2, 0, 1)
        batch = np.ascontiguousarray((chw[::-1] if self.app else chw)[None], dtype=np.float32)
        predictions = self._finish(self.runtime(batch))
        return self.task.rescale_predictions(predictions, self.input_size, size, self.model)

    def sample(self, image, sample=None):
        """The data sample ``predict`` of the package would give for ``image``: predictions
        mapped to the original image of ``sample`` (a test pipeline's data sample, whose
        ``image`` this is), or to ``image`` itself when there is none."""
        predictions = self.predict(image)
        if sample is None:
            h, w = (image.shape[1:] if isinstance(image, Tensor) else np.shape(image)[:2])
            sample = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
        return self.task.deployed_sample(predictions, sample, self.model)

    __call__ = sample


def dataset_meta(cfg, dataloader: str = 'test_dataloader') -> dict:
    """The class names (and palette) of a dataloader's dataset, as the dataset would report
    them (its class's ``METAINFO`` updated with the config's ``metainfo``), without reading
    any data."""
    from mmengine.registry import DATASETS

    loader = cfg.get(dataloader) or {}
    if not isinstance(loader.get('dataset'), dict):
        raise ConfigError(f'The config has no {dataloader}.dataset, which names the classes: '
                          f'add one (the classes come from its metainfo).')
    _, dataset = next(leaf_datasets(loader['dataset'], f'{dataloader}.dataset'))
    kind = dataset.get('type')
    if isinstance(kind, str):
        with DATASETS.switch_scope_and_registry(task_of(cfg).scope) as registry:
            cls = registry.get(kind)
    else:
        cls = kind
    if cls is None:
        raise ConfigError(f'{dataloader}.dataset.type {kind!r} is not a registered dataset: '
                          f'fix the config.')
    meta = cls._load_metainfo(dict(dataset.get('metainfo') or {}))
    if not meta.get('classes'):
        raise ConfigError(f'{dataloader}.dataset ({kind}) names no classes: add '
                          f'metainfo=dict(classes=(...)) to it.')
    return meta


def _draw(visualizer, task, sample, show_dir: Path, score_thr: float) -> None:
    """Draw the ground truth and predictions of ``sample`` on its image, as the test-time
    visualization hooks do, into ``show_dir/<image name>``."""
    import mmcv
    image = mmcv.imread(sample.img_path, channel_order='rgb')
    name = osp.basename(sample.img_path)
    visualizer.add_datasample(name, image, data_sample=sample, show=False,
                              out_file=str(show_dir / name), **task.draw_kwargs(score_thr))


def evaluate_deployed(cfg, model: str | Path | DeployedModel, threads: Optional[int] = None,
                      metrics: Sequence = (), show_dir: Optional[str | Path] = None,
                      logger=None) -> dict:
    """Run an exported model over ``cfg``'s test set and score it with ``cfg.test_evaluator``.

    Every image goes through the config's test pipeline, then the exported model
    (:meth:`DeployedModel.predict`); its predictions are mapped to the original image
    (detection: boxes divided by the sample's ``scale_factor``; segmentation: logits resized to
    ``ori_shape``) and fed to the evaluator, as mmengine's test loop feeds it a checkpoint's.

    Args:
        cfg: The config (``test_dataloader``, ``test_evaluator``, the model).
        model: The ``.onnx`` or ``.tflite`` file, or its :class:`DeployedModel` (of ``cfg``).
        threads: The runtime's threads (when ``model`` is a file).
        metrics: More metric objects for the evaluator (e.g. ``Task.dump_metric``).
        show_dir: Draw every image's ground truth and predictions into this folder.
        logger: Where the metrics' own log lines go (default: mmengine's current logger).

    Returns:
        The evaluator's metrics (``evaluator.evaluate(len(dataset))``).
    """
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmengine.utils import ProgressBar

    task = task_of(cfg)
    for key in ('test_dataloader', 'test_evaluator'):
        if not cfg.get(key):
            raise ConfigError(f'The config has no {key}, which evaluating a model needs: add '
                              f'one (see configs/ssdlite/mobileone_mu0_demo.py).')
    check_datasets(cfg, ['test_dataloader'])
    use_checked_image_loading(cfg, ['test_dataloader'], skip_unreadable=False)
    if not isinstance(model, DeployedModel):
        model = DeployedModel(cfg, model, threads)
    init_default_scope(cfg.get('default_scope', task.scope))
    with reading_annotations(cfg, ['test_dataloader']):
        loader = Runner.build_dataloader(cfg.test_dataloader)
        evaluator = Evaluator(cfg.test_evaluator)
    evaluator.metrics.extend(metrics)
    dataset = loader.dataset
    evaluator.dataset_meta = dataset.metainfo
    visualizer = score_thr = None
    if show_dir is not None:
        show_dir = Path(show_dir)
        show_dir.mkdir(parents=True, exist_ok=True)
        visualizer = task.visualizer(dataset.metainfo)
        hook = cfg.get('default_hooks', {}).get('visualization') or {}
        score_thr = float(hook.get('score_thr', 0.3))

    start = time.perf_counter()
    progress = ProgressBar(len(dataset))
    with reading_annotations(cfg, ['test_dataloader']):
        for batch in loader:
            samples = []
            for image, sample in zip(batch['inputs'], batch['data_samples']):
                sample = model.sample(image, sample)
                if visualizer is not None:
                    _draw(visualizer, task, sample, show_dir, score_thr)
                samples.append(sample)
                progress.update()
            evaluator.process(samples, batch)
        print(flush=True)  # after the progress bar's line
        seconds = time.perf_counter() - start
        if logger is not None:
            logger.info(f'{model.runtime_name} ran {model.path} on {len(dataset)} images in '
                        f'{seconds:.1f} s')
        results = evaluator.evaluate(len(dataset))
    return results


__all__ = ['DeployedModel', 'EXPORTED_SUFFIXES', 'dataset_meta', 'evaluate_deployed',
           'is_exported']
