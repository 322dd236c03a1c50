#!/usr/bin/env bash
# Detection half of `make demo`: SSDLite-MobileOne-mu0 on the synthetic scenes of
# tools/make_demo_data.py, from scratch (nothing is downloaded), on CPU.
#
#   generate the scenes (tools/make_demo_data.py, once) -> train (tools/train.py --progress,
#   bfloat16 where the CPU has it) -> COCO box mAP on the held-out test split (tools/test.py),
#   and beside it the boxes drawn on a few test scenes (tools/image_demo.py) and the training curves
#   (tools/analyze_logs.py) -> WORK_DIR/summary.json and the result lines (tools/demo_summary.py)
#
# The terminal shows the progress bar and the results; the tools' full output is in
# WORK_DIR/demo.log (see scripts/demo_lib.sh).
#
# Environment: WORK_DIR (default work_dirs/demo_detection), and PYTHON, DEMO_DATA, DEMO_PROCS,
# DEMO_CFG_OPTIONS as described in scripts/demo_lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/demo_lib.sh

config=configs/ssdlite/mobileone_mu0_demo.py
work="${WORK_DIR:-work_dirs/demo_detection}"
echo "== demo-det: SSDLite-MobileOne-mu0 detection, trained from scratch on the synthetic scenes"
demo_setup demo-det
demo_options "train_dataloader.dataset.data_root=$data/" "val_dataloader.dataset.data_root=$data/" \
  "test_dataloader.dataset.data_root=$data/" \
  "val_evaluator.ann_file=$data/annotations/instances_val.json" \
  "test_evaluator.ann_file=$data/annotations/instances_test.json"

echo "demo-det: training $config ($procs process(es), $(demo_expect 7-8 14-19); log $log)"
demo_train "$config" "$work" 29517
trained=$SECONDS

images=("$data"/images/test/*.jpg)
images=("${images[@]:0:8}")
echo "demo-det: evaluating on the held-out test split (COCO box mAP), drawing ${#images[@]}" \
  "test scenes"
demo_inputs "$work/demo_inputs" "${images[@]}"
demo_draw 'drawing the boxes' "$work/pictures"
demo_run evaluation "$py" tools/test.py "$config" "$checkpoint" --work-dir "$work" "${opts[@]}"
demo_finish detection "$work/pictures" "$trained"
