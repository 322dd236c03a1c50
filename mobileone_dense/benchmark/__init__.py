"""Benchmarks behind ``tools/benchmark.py``: ``latency`` and ``train`` (and the ``coreml``
conversion check), each with ``add_arguments(parser)`` and ``run(args) -> dict``, on one model
builder (:mod:`.models`), one timing loop (:mod:`.timing`) and the export's own writers
(:mod:`.convert`)."""
