#!/usr/bin/env bash
# Serves the web demo (examples/web: MediaPipe Tasks in the browser) with a folder of
# tools/export.py on http://127.0.0.1:PORT/ and prints the URL to open; Ctrl-C stops it.
#
#   bash scripts/web_demo.sh [EXPORT_DIR]      (make web-demo [EXPORT=DIR] [PORT=8000])
#
# EXPORT_DIR (default work_dirs/demo_detection/deploy, written by make deploy-accuracy) holds
# model_int8.tflite / model.tflite; a segmentor's folder opens the page with ?task=segmentation.
# The demo's test scenes (data/demo/images/test) are served too: the URL shows the first one.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="${1:-$root/work_dirs/demo_detection/deploy}"
port="${PORT:-8000}"
python="$root/.venv/bin/python"
[ -x "$python" ] || python=python3

wasm="$root/examples/web/node_modules/@mediapipe/tasks-vision/wasm"
if [ ! -f "$wasm/vision_wasm_internal.wasm" ]; then
  echo "web-demo: examples/web/node_modules is missing: run make install" \
       "(scripts/install_web.sh)" >&2
  exit 1
fi
if [ ! -d "$dir" ]; then
  echo "web-demo: no folder $dir: export a model with tools/export.py CONFIG CHECKPOINT" \
       "--out-dir DIR --format tflite tflite-int8 (or run make deploy-accuracy) and pass DIR" >&2
  exit 1
fi
if [ -f "$dir/model_int8.tflite" ]; then model=model_int8.tflite
elif [ -f "$dir/model.tflite" ]; then model=model.tflite
else
  echo "web-demo: $dir has no model_int8.tflite or model.tflite: export with tools/export.py" \
       "--format tflite tflite-int8" >&2
  exit 1
fi
page="?model=$model"
if grep -qs decode_head "$dir/train_config.py"; then page="$page&task=segmentation"; fi
roots=("$root/examples/web" "$dir")
images="$root/data/demo/images/test"
first=$(ls "$images" 2>/dev/null | grep -m1 -iE '\.(jpe?g|png)$' || true)
if [ -n "$first" ]; then
  roots+=("$images")
  page="$page&image=$first"
fi
exec "$python" "$root/examples/web/serve.py" --quiet --port "$port" --page "$page" "${roots[@]}"
