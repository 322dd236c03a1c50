#!/usr/bin/env bash
# Segmentation half of `make demo`: DeepLabV3-MobileOne-mu0 on the synthetic scenes of
# tools/make_demo_data.py, from scratch (nothing is downloaded), on CPU.
#
#   generate the scenes (tools/make_demo_data.py, once) -> train (tools/train.py) -> mIoU and
#   per-class IoU on the val split (tools/test.py, mmseg's IoUMetric) -> mask overlays of a few
#   val scenes (tools/image_demo.py)
#
# Environment: WORK_DIR (default work_dirs/demo_segmentation), and PYTHON, DEMO_DATA,
# DEMO_PROCS, DEMO_CFG_OPTIONS as described in scripts/demo_lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/demo_lib.sh

config=configs/deeplabv3/mobileone_mu0_demo.py
work="${WORK_DIR:-work_dirs/demo_segmentation}"
demo_setup demo-seg
demo_options "train_dataloader.dataset.data_root=$data" "val_dataloader.dataset.data_root=$data" \
  "test_dataloader.dataset.data_root=$data"

echo "demo-seg: training $config from scratch ($procs process(es), about 8 minutes on 2 cores)"
demo_train "$config" "$work" 29518
trained=$SECONDS

echo "demo-seg: evaluating $checkpoint on the val split"
"$py" tools/test.py "$config" "$checkpoint" --work-dir "$work" "${opts[@]}"

images=()
while read -r stem; do
  images+=("$data/images/val/$stem.jpg")
done < <(head -n 6 "$data/splits/val.txt")
echo "demo-seg: drawing mask overlays on ${#images[@]} val scenes"
demo_inputs "$work/demo_inputs" "${images[@]}"
"$py" tools/image_demo.py "$work/demo_inputs" "$config" "$checkpoint" --out-dir "$work/overlays"

miou=$("$py" -c "import json, sys; m = json.load(open(sys.argv[1]))['metrics']; \
print(f\"{m['mIoU']:.1f}\")" "$work/test_metrics.json")
echo
echo "demo-seg: DeepLabV3-MobileOne-mu0 val mIoU ${miou}% (per-class IoU in the table above)"
echo "demo-seg: metrics  $work/test_metrics.json"
echo "demo-seg: overlays $work/overlays/ (mask overlays of ${#images[@]} val scenes)"
echo "demo-seg: wall time $((SECONDS - start)) s (training $((trained - start)) s)"
