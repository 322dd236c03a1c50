#!/usr/bin/env bash
# The demo models in every deployment format, each scored on the held-out test split as a
# checkpoint is: tools/export.py writes fused.pth, model.onnx, model.tflite and
# model_int8.tflite from each demo's last checkpoint (make demo trains them), then tools/test.py
# scores each file, the LiteRT ones also in MediaPipe Tasks (--client mediapipe), as apps run
# them; tools/demo_summary.py formats prints the table.
#
#   bash scripts/deploy_accuracy.sh            (make deploy-accuracy)
#
# Writes work_dirs/demo_{detection,segmentation}/deploy/ (the files) and test_<format>/ in it
# (each evaluation's test_metrics.json and log). Environment: PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"

dirs=()
for demo in detection segmentation; do
  work=work_dirs/demo_$demo
  case $demo in
    detection) config=configs/ssdlite/mobileone_mu0_demo.py ;;
    segmentation) config=configs/deeplabv3/mobileone_mu0_demo.py ;;
  esac
  if [ ! -f "$work/last_checkpoint" ]; then
    echo "deploy_accuracy: $work has no trained model (no last_checkpoint): run make demo first" >&2
    exit 1
  fi
  checkpoint=$(cat "$work/last_checkpoint")
  out=$work/deploy
  echo "== deploy_accuracy: $demo: exporting $checkpoint into $out"
  "$py" tools/export.py "$config" "$checkpoint" --out-dir "$out" --format onnx tflite tflite-int8
  echo "== deploy_accuracy: $demo: fused PyTorch"
  "$py" tools/test.py "$out/deploy_config.py" "$out/fused.pth" --work-dir "$out/test_fused"
  for name in onnx tflite tflite_int8; do
    file=model.${name/_int8/}
    [ "$name" = tflite_int8 ] && file=model_int8.tflite
    echo "== deploy_accuracy: $demo: $file"
    "$py" tools/test.py "$config" "$out/$file" --work-dir "$out/test_$name"
  done
  for file in model.tflite model_int8.tflite; do  # the same files as apps run them
    echo "== deploy_accuracy: $demo: $file in MediaPipe Tasks"
    sub=test_mediapipe; [ "$file" = model_int8.tflite ] && sub=test_mediapipe_int8
    "$py" tools/test.py "$config" "$out/$file" --client mediapipe --work-dir "$out/$sub"
  done
  dirs+=("$out")
done
echo
"$py" tools/demo_summary.py formats "${dirs[@]}"
