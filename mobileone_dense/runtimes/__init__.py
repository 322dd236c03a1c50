"""Where an exported model runs: one module per runtime, each with named tensors in and out
(today ONNX Runtime; fused PyTorch is the model itself)."""
