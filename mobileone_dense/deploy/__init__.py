"""From a trained checkpoint to deployed files and back to metrics: :func:`.pipeline.export`
writes the checked files (fused weights, ONNX, LiteRT FP32/INT8, Core ML) and
:mod:`.evaluate` runs an exported file like a checkpoint (predictions, the config's
evaluator). Both combine a task (:mod:`mobileone_dense.tasks`: what is deployed) with a format
(:mod:`mobileone_dense.export` writes it, :mod:`mobileone_dense.runtimes` runs it)."""
