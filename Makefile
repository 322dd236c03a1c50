# mobileone-dense: `make demo` and `make test` are the two commands a new user types.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-fast lint demo demo-runs deploy-accuracy benchmark web-demo clean

# The Python stack into ./.venv, then Chromium and the web page's npm packages (examples/web).
install:
	bash scripts/install.sh
	bash scripts/install_web.sh

# The whole suite (what CI runs: .ci/run) on two pytest-xdist workers, each test module whole on
# one (--dist loadscope: its module fixtures are built once), then the layers contract.
test: install
	$(PY) -m pytest -q -n 2 --dist loadscope --durations=15
	$(VENV)/bin/lint-imports

# Everything but the tests marked slow (subprocess tools, training, conversions).
test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadscope -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Generates the synthetic scenes, trains SSDLite-MobileOne and DeepLabV3-MobileOne on them from
# scratch, evaluates them on the held-out test split (COCO mAP, mIoU) and draws predictions and
# training curves; ends with a table of the results (each demo's work_dirs/demo_*/summary.json).
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

# The demo models (make demo) exported to every format and each file scored on the test split.
deploy-accuracy: install
	bash scripts/deploy_accuracy.sh

# The web demo (examples/web): an exported model in MediaPipe Tasks for the web, served on
# localhost with the demo's test scenes; prints the URL to open (Ctrl-C stops it).
EXPORT ?= work_dirs/demo_detection/deploy
PORT ?= 8000
web-demo: install
	PORT=$(PORT) bash scripts/web_demo.sh $(EXPORT)

benchmark: install
	$(PY) tools/benchmark.py latency
	$(PY) tools/benchmark.py train

clean:
	rm -rf work_dirs .pytest_cache
