#!/usr/bin/env bash
# Detection half of `make demo`: SSDLite-MobileOne-mu0 on the synthetic scenes of
# tools/make_demo_data.py, from scratch (nothing is downloaded), on CPU.
#
#   generate the scenes (tools/make_demo_data.py, once) -> train (tools/train.py, progress with
#   ETA and losses) -> COCO box mAP on the val split (tools/test.py, pycocotools' table)
#   -> boxes drawn on a few val scenes (tools/image_demo.py)
#
# Environment: WORK_DIR (default work_dirs/demo_detection), and PYTHON, DEMO_DATA, DEMO_PROCS,
# DEMO_CFG_OPTIONS as described in scripts/demo_lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/demo_lib.sh

config=configs/ssdlite/mobileone_mu0_demo.py
work="${WORK_DIR:-work_dirs/demo_detection}"
demo_setup demo-det
demo_options "train_dataloader.dataset.data_root=$data/" "val_dataloader.dataset.data_root=$data/" \
  "test_dataloader.dataset.data_root=$data/" \
  "val_evaluator.ann_file=$data/annotations/instances_val.json" \
  "test_evaluator.ann_file=$data/annotations/instances_val.json"

echo "demo-det: training $config from scratch ($procs process(es), about 9 minutes on 2 cores)"
demo_train "$config" "$work" 29517
trained=$SECONDS

echo "demo-det: evaluating $checkpoint on the val split (COCO box mAP)"
"$py" tools/test.py "$config" "$checkpoint" --work-dir "$work" "${opts[@]}"

images=("$data"/images/val/*.jpg)
images=("${images[@]:0:8}")
echo "demo-det: drawing the predicted boxes on ${#images[@]} val scenes"
demo_inputs "$work/demo_inputs" "${images[@]}"
"$py" tools/image_demo.py "$work/demo_inputs" "$config" "$checkpoint" --out-dir "$work/pictures"

read -r map map50 map75 < <("$py" -c "import json, sys; m = json.load(open(sys.argv[1]))['metrics']; \
print(*(f\"{m['coco/' + k]:.3f}\" for k in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')))" \
  "$work/test_metrics.json")
echo
echo "demo-det: SSDLite-MobileOne-mu0 val box mAP@[0.5:0.95] $map (mAP@0.5 $map50, mAP@0.75 $map75)"
echo "demo-det: metrics  $work/test_metrics.json"
echo "demo-det: pictures $work/pictures/ (boxes, class names and scores on ${#images[@]} val scenes)"
echo "demo-det: wall time $((SECONDS - start)) s (training $((trained - start)) s)"
