"""Writing a network as a file, one module per format (``onnx``, ``litert``, ``coreml`` with
``coreml_check``), and the pieces every exported graph is built from: the normalisation and its
fold into the first convolution (``graph``), class-wise NMS as one op (``nms``), and how far two
renderings of a network are apart (``numerics``). Which network a task exports is
:mod:`mobileone_dense.tasks`' business; :mod:`mobileone_dense.deploy` puts the two together.
"""
