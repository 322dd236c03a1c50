#!/usr/bin/env bash
# Detection half of `make demo`: SSDLite-MobileOne on the synthetic scenes of
# tools/make_demo_data.py, from scratch (nothing is downloaded), on CPU.
#
#   generate the scenes (tools/make_demo_data.py, once) -> train (tools/train.py, progress with
#   ETA and losses) -> COCO box mAP on the val split (tools/test.py, pycocotools' table)
#   -> boxes drawn on a few val scenes (tools/image_demo.py)
#
# Environment: PYTHON (default .venv/bin/python), WORK_DIR (default work_dirs/demo_detection),
# DEMO_DATA (default data/demo, generated when missing), DEMO_PROCS (training processes,
# default 2: one per core, data-parallel through tools/dist_train.sh; 1 trains in one process).
set -euo pipefail
cd "$(dirname "$0")/.."

py="${PYTHON:-.venv/bin/python}"
config=configs/ssdlite/mobileone_mu0_demo.py
work="${WORK_DIR:-work_dirs/demo_detection}"
data="${DEMO_DATA:-data/demo}"
procs="${DEMO_PROCS:-2}"
start=$SECONDS

if [ ! -x "$py" ]; then
  echo "demo-det: no $py yet, installing first (make install)"
  bash scripts/install.sh
fi
if [ ! -f "$data/annotations/instances_val.json" ]; then
  echo "demo-det: generating the synthetic scenes into $data"
  "$py" tools/make_demo_data.py --out "$data"
fi
opts=()
if [ "$data" != data/demo ]; then
  opts=(--cfg-options "train_dataloader.dataset.data_root=$data/"
        "val_dataloader.dataset.data_root=$data/" "test_dataloader.dataset.data_root=$data/"
        "val_evaluator.ann_file=$data/annotations/instances_val.json"
        "test_evaluator.ann_file=$data/annotations/instances_val.json")
fi

# One thread per process: two processes on two cores beat one process with two threads, and
# oversubscribed OpenMP threads crawl when the machine is busy.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
echo "demo-det: training $config from scratch ($procs process(es), about 10 minutes on 2 cores)"
rm -rf "$work"
if [ "$procs" -gt 1 ]; then
  PYTHON="$py" PORT="${PORT:-29517}" nice -n 5 bash tools/dist_train.sh "$config" "$procs" \
    --work-dir "$work" "${opts[@]}"
else
  nice -n 5 "$py" tools/train.py "$config" --work-dir "$work" "${opts[@]}"
fi
checkpoint=$(cat "$work/last_checkpoint")
trained=$SECONDS

echo "demo-det: evaluating $checkpoint on the val split (COCO box mAP)"
"$py" tools/test.py "$config" "$checkpoint" --work-dir "$work" "${opts[@]}"

echo "demo-det: drawing the predicted boxes on 8 val scenes"
rm -rf "$work/demo_inputs" && mkdir -p "$work/demo_inputs"
for i in 0 1 2 3 4 5 6 7; do
  name=$(printf '%06d.jpg' "$i")
  ln -s "$(cd "$data/images/val" && pwd)/$name" "$work/demo_inputs/$name"
done
"$py" tools/image_demo.py "$work/demo_inputs" "$config" "$checkpoint" --out-dir "$work/pictures"

read -r map map50 map75 < <("$py" -c "import json, sys; m = json.load(open(sys.argv[1]))['metrics']; \
print(*(f\"{m['coco/' + k]:.3f}\" for k in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')))" \
  "$work/test_metrics.json")
echo
echo "demo-det: SSDLite-MobileOne val box mAP@[0.5:0.95] $map (mAP@0.5 $map50, mAP@0.75 $map75)"
echo "demo-det: metrics  $work/test_metrics.json"
echo "demo-det: pictures $work/pictures/ (boxes, class names and scores on 8 val scenes)"
echo "demo-det: wall time $((SECONDS - start)) s (training $((trained - start)) s)"
