"""What every task adapter answers: the part of building, exporting, checking, drawing and
evaluating that differs between detection (mmdet) and segmentation (mmseg)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import Tensor, nn

from ..errors import ExportError


@dataclass
class Comparison:
    """Whether two sets of final predictions agree, in one line, with the figures behind it."""
    ok: bool
    text: str
    details: dict = field(default_factory=dict)


class Task:
    """One kind of model; subclasses fill in what differs.

    Attributes:
        name: ``detection`` or ``segmentation``.
        scope: The OpenMMLab scope whose registries build its models (``mmdet``, ``mmseg``).
        output_names: Names of the exported graph's outputs, in order.
        network_output_names: Names of :meth:`network`'s outputs, in order.
    """
    name: str = ''
    scope: str = ''
    output_names: tuple[str, ...] = ()
    network_output_names: tuple[str, ...] = ()

    # ----------------------------------------------------------------------- inputs
    def data_sample(self, metainfo: dict):
        raise NotImplementedError

    def preprocess(self, model: nn.Module, image: Tensor) -> tuple[Tensor, list]:
        """Run a ``1x3xHxW`` 0..255 image through the model's own data preprocessor; returns
        the inputs and data samples for ``model.predict``."""
        h, w = image.shape[-2:]
        sample = self.data_sample(dict(img_shape=(h, w), ori_shape=(h, w),
                                       scale_factor=(1.0, 1.0)))
        data = model.data_preprocessor(dict(inputs=[image[0]], data_samples=[sample]), False)
        return data['inputs'], data['data_samples']

    def default_input_size(self, cfg) -> tuple[int, int]:
        """The (H, W) the config tests at: a fixed-size ``Resize`` in the test pipeline."""
        pipeline = cfg.get('test_pipeline') or cfg.get('test_dataloader', {}).get(
            'dataset', {}).get('pipeline', [])
        for step in pipeline:
            if step.get('type') == 'Resize' and not step.get('keep_ratio', False) and \
                    step.get('scale'):
                scale = step['scale']
                scale = (scale, scale) if isinstance(scale, int) else scale
                return int(scale[1]), int(scale[0])  # mmcv scales are (w, h)
        raise ExportError('Cannot tell the input size from the config (no crop_size and no '
                          'fixed-size Resize in the test pipeline): pass --input-size H W.')

    # ----------------------------------------------------------------------- export
    def export_wrapper(self, model: nn.Module, input_size: Sequence[int]) -> nn.Module:
        """The model as one graph: raw image in, final predictions (:attr:`output_names`) out."""
        raise NotImplementedError

    def network(self, model: nn.Module, input_size: Sequence[int], app: bool = False
                ) -> nn.Module:
        """What every runtime runs (LiteRT, Core ML; ONNX adds the post-processing): raw image
        in, :attr:`network_output_names` out. Its ``core`` is the part INT8 quantizes.

        ``app=True``: the form MediaPipe Tasks run (the LiteRT files): RGB image in, the
        outputs their metadata declare (:meth:`from_app_outputs` turns them back)."""
        raise NotImplementedError

    def from_app_outputs(self, outputs: Sequence, model: nn.Module,
                         input_size: Sequence[int]) -> list[Tensor]:
        """:meth:`network`'s outputs from those of its ``app=True`` form."""
        raise NotImplementedError

    def postprocessor(self, model: nn.Module, input_size: Sequence[int]
                      ) -> Callable[[Sequence[Tensor]], list[Tensor]]:
        """Turns :meth:`network`'s outputs into the final predictions (:attr:`output_names`),
        as the ONNX graph computes them inside."""
        raise NotImplementedError

    def predictions(self, model: nn.Module, image: Tensor) -> list[Tensor]:
        """The package's own ``predict`` on ``image`` (no rescaling), as the graph's outputs."""
        raise NotImplementedError

    def compare_predictions(self, actual: Sequence, expected: Sequence, rtol: float,
                            input_size: Sequence[int]) -> Comparison:
        """Compare final predictions of two renderings of one model."""
        raise NotImplementedError

    # ----------------------------------------------------------------------- tools
    def dump_metric(self, out_file: str):
        """The evaluator metric that pickles raw predictions (``tools/test.py --out``)."""
        raise NotImplementedError

    def show_predictions(self, cfg, show_dir: str) -> None:
        """Make the config's visualization hook draw every test prediction into ``show_dir``."""
        raise NotImplementedError

    def inferencer(self, cfg, checkpoint: str, device: str
                   ) -> tuple[nn.Module, object, Callable[[object], object]]:
        """The model, a visualizer with the class names, and ``infer(bgr_image) -> sample``."""
        raise NotImplementedError

    def summary(self, result, classes: Sequence[str], score_thr: float) -> str:
        """What a prediction shows, in a few words (for the demo's terminal line)."""
        raise NotImplementedError

    def draw_kwargs(self, score_thr: float) -> dict:
        """Extra arguments of the visualizer's ``add_datasample``."""
        return {}

    def visualizer(self, dataset_meta: dict):
        """The task's visualizer, knowing the class names (and colours) of ``dataset_meta``."""
        raise NotImplementedError

    # ----------------------------------------------------------------------- exported models
    def rescale_predictions(self, predictions: Sequence[Tensor], from_size: Sequence[int],
                            to_size: Sequence[int], model: nn.Module) -> list[Tensor]:
        """Final predictions (:attr:`output_names`) of an image of ``from_size`` (H, W) as they
        would be on that image resized to ``to_size``."""
        raise NotImplementedError

    def deployed_sample(self, predictions: Sequence[Tensor], sample, model: nn.Module):
        """The data sample the package's own ``predict`` would return, from an exported model's
        final predictions on the image a test pipeline made (``img_shape``).

        Args:
            predictions: Final predictions (:attr:`output_names`), in that image's pixels.
            sample: The pipeline's data sample (ground truth and metainfo kept), or a metainfo
                dict for a new one.
            model: The config's model (for settings such as ``align_corners``).

        Returns:
            ``sample`` with the predictions mapped to the original image (``ori_shape``), as
            ``predict(..., rescale=True)`` leaves them.
        """
        raise NotImplementedError

