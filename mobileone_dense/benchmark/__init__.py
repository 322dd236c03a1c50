"""Benchmarks behind ``tools/benchmark.py``: one module per subcommand, each with
``add_arguments(parser)`` and ``run(args) -> dict``."""
