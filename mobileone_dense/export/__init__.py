"""Deploy-time export of a trained MobileOne detector or segmentor, one module per job:

- ``fusion``: fusing a whole model (MobileOne blocks, optionally every conv + BN pair);
- ``numerics``: test inputs, the agreement check and its capped tolerance;
- ``graph``: the ONNX graph pieces (normalisation, detector and segmentor wrappers, the
  detector's post-processing);
- ``nms``: class-wise NMS as one op (ONNX's ``NonMaxSuppression``; ONNX Runtime's or mmcv's
  kernel in PyTorch);
- ``onnx``: writing an ONNX file;
- ``pipeline``: :func:`~.pipeline.export`, which checks and writes the deployment files.

Runtimes that run the exported files live in :mod:`mobileone_dense.runtimes`.
"""
