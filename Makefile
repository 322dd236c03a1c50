# mobileone-dense: `make demo` and `make test` are the two commands a new user types.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint demo demo-runs benchmark clean

install:
	bash scripts/install.sh

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

# Generates the synthetic scenes, trains SSDLite-MobileOne and DeepLabV3-MobileOne on them from
# scratch, evaluates (COCO mAP, mIoU) and draws predictions and training curves; ends with a
# table of the results (each demo's work_dirs/demo_*/summary.json; full logs beside them).
demo: install
	bash scripts/demo_detection.sh
	bash scripts/demo_segmentation.sh
	@echo
	@$(PY) tools/demo_summary.py table work_dirs/demo_detection work_dirs/demo_segmentation

# Each demo RUNS times in a row (default 3), each run in work_dirs/demo_runs/<demo>_<i>, then one
# table of every run with the time limit (8 minutes) and the count of runs that met the target.
RUNS ?= 3
demo-runs: install
	bash scripts/demo_runs.sh $(RUNS)

benchmark: install
	$(PY) tools/benchmark.py backbone
	$(PY) tools/benchmark.py detector
	$(PY) tools/benchmark.py segmentor
	$(PY) tools/benchmark.py export

clean:
	rm -rf work_dirs .pytest_cache
