#!/usr/bin/env bash
# Segmentation half of `make demo`: DeepLabV3-MobileOne-mu0 on the synthetic scenes of
# tools/make_demo_data.py, from scratch (nothing is downloaded), on CPU.
#
#   train (tools/train.py) -> mIoU and per-class IoU on the val split (tools/test.py, mmseg's
#   IoUMetric) -> mask overlays of a few val scenes (tools/image_demo.py)
#
# Environment: PYTHON (default .venv/bin/python), WORK_DIR (default work_dirs/demo_segmentation),
# DEMO_DATA (default data/demo, generated when missing), DEMO_PROCS (training processes,
# default 2: one per core, data-parallel through tools/dist_train.sh; 1 trains in one process).
set -euo pipefail
cd "$(dirname "$0")/.."

py="${PYTHON:-.venv/bin/python}"
config=configs/deeplabv3/mobileone_mu0_demo.py
work="${WORK_DIR:-work_dirs/demo_segmentation}"
data="${DEMO_DATA:-data/demo}"
procs="${DEMO_PROCS:-2}"
start=$SECONDS

if [ ! -x "$py" ]; then
  echo "demo-seg: no $py yet, installing first (make install)"
  bash scripts/install.sh
fi

if [ ! -f "$data/splits/val.txt" ]; then
  echo "demo-seg: generating the synthetic scenes into $data"
  "$py" tools/make_demo_data.py --out "$data"
fi
opts=()
if [ "$data" != data/demo ]; then
  opts=(--cfg-options "train_dataloader.dataset.data_root=$data"
        "val_dataloader.dataset.data_root=$data" "test_dataloader.dataset.data_root=$data")
fi

# One thread per process: two processes on two cores beat one process with two threads.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
echo "demo-seg: training $config from scratch ($procs process(es), about 8 minutes on 2 cores)"
rm -rf "$work"
if [ "$procs" -gt 1 ]; then
  PYTHON="$py" PORT="${PORT:-29518}" nice -n 5 bash tools/dist_train.sh "$config" "$procs" \
    --work-dir "$work" "${opts[@]}"
else
  nice -n 5 "$py" tools/train.py "$config" --work-dir "$work" "${opts[@]}"
fi
checkpoint=$(cat "$work/last_checkpoint")
trained=$SECONDS

echo "demo-seg: evaluating $checkpoint on the val split"
"$py" tools/test.py "$config" "$checkpoint" --work-dir "$work" "${opts[@]}"

echo "demo-seg: drawing mask overlays"
rm -rf "$work/demo_inputs" && mkdir -p "$work/demo_inputs"
for stem in $(head -n 6 "$data/splits/val.txt"); do
  ln -s "$(cd "$data/images/val" && pwd)/$stem.jpg" "$work/demo_inputs/$stem.jpg"
done
"$py" tools/image_demo.py "$work/demo_inputs" "$config" "$checkpoint" --out-dir "$work/overlays"

miou=$("$py" -c "import json, sys; m = json.load(open(sys.argv[1]))['metrics']; \
print(f\"{m['mIoU']:.1f}\")" "$work/test_metrics.json")
echo
echo "demo-seg: DeepLabV3-MobileOne-mu0 val mIoU ${miou}% (per-class IoU in the table above)"
echo "demo-seg: metrics  $work/test_metrics.json"
echo "demo-seg: overlays $work/overlays/ (mask overlays of 6 val scenes)"
echo "demo-seg: wall time $((SECONDS - start)) s (training $((trained - start)) s)"
