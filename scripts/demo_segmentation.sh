#!/usr/bin/env bash
# Segmentation half of `make demo`: DeepLabV3-MobileOne-mu0 on the synthetic scenes of
# tools/make_demo_data.py, from scratch (nothing is downloaded), on CPU.
#
#   generate the scenes (tools/make_demo_data.py, once) -> train (tools/train.py --progress)
#   -> mIoU and per-class IoU on the held-out test split (tools/test.py, mmseg's IoUMetric), and
#   beside it mask overlays of a few test scenes (tools/image_demo.py) and the training curves
#   (tools/analyze_logs.py) -> WORK_DIR/summary.json and the result lines (tools/demo_summary.py)
#
# The terminal shows the progress bar and the results; the tools' full output is in
# WORK_DIR/demo.log (see scripts/demo_lib.sh).
#
# Environment: WORK_DIR (default work_dirs/demo_segmentation), and PYTHON, DEMO_DATA,
# DEMO_PROCS, DEMO_CFG_OPTIONS as described in scripts/demo_lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/demo_lib.sh

config=configs/deeplabv3/mobileone_mu0_demo.py
work="${WORK_DIR:-work_dirs/demo_segmentation}"
echo "== demo-seg: DeepLabV3-MobileOne-mu0 segmentation, trained from scratch on the synthetic" \
  "scenes"
demo_setup demo-seg
demo_options "train_dataloader.dataset.data_root=$data" "val_dataloader.dataset.data_root=$data" \
  "test_dataloader.dataset.data_root=$data"

echo "demo-seg: training $config ($procs process(es), $(demo_expect 6-8 16-19); log $log)"
demo_train "$config" "$work" 29518
trained=$SECONDS

images=()
while read -r stem; do
  images+=("$data/images/test/$stem.jpg")
done < <(head -n 6 "$data/splits/test.txt")
echo "demo-seg: evaluating on the held-out test split (mIoU, per-class IoU), drawing" \
  "${#images[@]} test scenes"
demo_inputs "$work/demo_inputs" "${images[@]}"
demo_draw 'drawing the overlays' "$work/overlays"
demo_run evaluation "$py" tools/test.py "$config" "$checkpoint" --work-dir "$work" "${opts[@]}"
demo_finish segmentation "$work/overlays" "$trained"
