# mobileone-dense: `make demo` and `make test` are the two commands a new user types.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint demo benchmark clean

install:
	bash scripts/install.sh

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(PY) tools/benchmark.py backbone --variants s0 s1 --sizes 224 --rounds 30

benchmark: install
	$(PY) tools/benchmark.py backbone

clean:
	rm -rf work_dirs .pytest_cache
