"""The metadata MediaPipe Tasks read from a ``.tflite`` (Android, iOS and the web run the same
task graphs): name, image input, labels, and for a detector the decoding of its raw outputs.

The LiteRT files hold a network's ``app=True`` form (:meth:`~mobileone_dense.tasks.base.Task.
network`): an RGB image of 0..255 floats in, the normalisation folded inside, so the metadata
declares mean 0 and std 1. A detector ends at per-anchor boxes (centre y, x, height, width as
fractions of the input) and class scores: MediaPipe's ObjectDetector decodes them with one
identity anchor per box (``x = raw_x * 1 + 0``), then keeps the best class of each anchor and
runs its own NMS. A segmenter ends at channels-last logits, from which ImageSegmenter makes its
category and confidence masks.

mediapipe 1.2.2's writer imports a native module its wheel lacks
(``_pywrap_metadata_version``), used only to stamp the oldest metadata parser that reads the
file; :func:`_writers` supplies it (the version of the schema the wheel ships) when missing.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Sequence

from ..errors import ExportError

#: The metadata parser version stamped into the files: the newest of the schema mediapipe 1.2.2
#: ships (1.5.0 added the custom metadata that carries the detector's decoding options).
PARSER_VERSION = '1.5.0'
_PYWRAP = 'mediapipe.tasks.cc.metadata.python._pywrap_metadata_version'


def _writers():
    """mediapipe's metadata writer modules (object_detector, image_segmenter, metadata_writer),
    or one sentence saying how to install mediapipe."""
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        raise ExportError('Writing MediaPipe metadata into the LiteRT files needs the mediapipe '
                          'package: make install (scripts/install.sh installs it).') from None
    try:
        __import__(_PYWRAP)
    except ImportError:  # the module and the packages above it (mediapipe.tasks.cc, ...)
        parts = _PYWRAP.split('.')
        for i in range(3, len(parts) + 1):
            name = '.'.join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                setattr(sys.modules['.'.join(parts[:i - 1])], parts[i - 1], sys.modules[name])
        sys.modules[_PYWRAP].GetMinimumMetadataParserVersion = lambda buffer: PARSER_VERSION
    from mediapipe.tasks.python.metadata.metadata_writers import (
        image_segmenter,
        metadata_info,
        metadata_writer,
        object_detector,
    )
    return object_detector, image_segmenter, metadata_info, metadata_writer


def write_metadata(path: str | Path, task: str, labels: Sequence[str]) -> Path:
    """Write MediaPipe's metadata into the ``.tflite`` at ``path`` (replaced in place).

    Args:
        path: A LiteRT file of a network's ``app=True`` form.
        task: ``detection`` (ObjectDetector) or ``segmentation`` (ImageSegmenter).
        labels: The class names, in the order of the score / logit channels.
    """
    detector, segmenter, info, writer = _writers()
    path = Path(path)
    model = bytearray(path.read_bytes())
    names = writer.Labels().add([str(n) for n in labels])
    mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]  # the normalisation is inside the network
    if task == 'detection':
        boxes = _output_shapes(model)[0][1]
        anchors = detector.FixedAnchorsSchema(
            [detector.FixedAnchor(x_center=0.0, y_center=0.0, width=1.0, height=1.0)] * boxes)
        decoding = detector.TensorsDecodingOptions(
            num_classes=len(labels), num_boxes=boxes, num_coords=4, keypoint_coord_offset=0,
            num_keypoints=0, num_values_per_keypoint=2, x_scale=1.0, y_scale=1.0, w_scale=1.0,
            h_scale=1.0,
            apply_exponential_on_box_size=False, sigmoid_score=False)
        md = detector.MetadataWriter.create_for_models_without_nms(
            model, mean, std, names, detector.SsdAnchorsOptions(anchors), decoding,
            info.RawDetectionOutputTensorsOrder.LOCATION_SCORE)
    elif task == 'segmentation':
        md = segmenter.MetadataWriter.create(model, mean, std, names)
    else:
        raise ExportError(f'No MediaPipe task runs a {task} model: export detectors or '
                          f'segmentors.')
    content, _ = md.populate()
    del md  # its temporary folder goes now, not at interpreter exit (where cleanup fails)
    path.write_bytes(bytes(content))
    return path


def _output_shapes(model: bytes) -> list[tuple[int, ...]]:
    """The shapes of the first subgraph's outputs, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    root = schema.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    return [tuple(int(d) for d in graph.Tensors(graph.Outputs(i)).ShapeAsNumpy())
            for i in range(graph.OutputsLength())]


def has_metadata(path: str | Path) -> bool:
    """Whether the ``.tflite`` at ``path`` carries MediaPipe's metadata, i.e. holds a network's
    ``app=True`` form (every LiteRT file ``tools/export.py`` writes)."""
    from ai_edge_litert import schema_py_generated as schema
    root = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    return any(root.Metadata(i).Name() == b'TFLITE_METADATA' for i in range(root.MetadataLength()))
