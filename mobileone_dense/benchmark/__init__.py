"""Benchmarks behind ``tools/benchmark.py``: one module per subcommand (``backbone``,
``detector``, ``segmentor``, ``export``, ``train``, ``deploy``), each with
``add_arguments(parser)`` and ``run(args) -> dict``, and the pieces they share (``common``; for
``export``: ``candidates``, ``macs``, ``load``, ``plot``; for ``deploy --accuracy``:
``deploy_accuracy``)."""
