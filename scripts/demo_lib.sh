# Shared steps of scripts/demo_detection.sh and scripts/demo_segmentation.sh (sourced, not run).
#
# Environment read here: PYTHON (default .venv/bin/python), DEMO_DATA (default data/demo,
# generated when missing), DEMO_PROCS (training processes, default 2: one per core,
# data-parallel through tools/dist_train.sh; 1 trains in one process), DEMO_AMP (auto: bfloat16
# where the CPU has it; 0 float32; 1 bfloat16), DEMO_MALLOC (system: glibc's malloc defaults
# instead of keeping freed memory, see demo_train) and DEMO_CFG_OPTIONS (extra `--cfg-options`
# for train and test, e.g. a shorter schedule).
#
# The terminal shows a header, the training progress bar (mobileone_dense/engine/progress.py),
# the results and where the pictures are; everything the tools print (mmengine's console log,
# the config dump, warnings) goes to $work/demo.log, and mmengine's own log of each run to
# $work/<timestamp>/<timestamp>.log. A failing step prints its error and the end of demo.log.
#
# After `demo_setup TAG` (with $work set): $py, $data, $procs, $start ($SECONDS), $started (the
# same moment in seconds since the epoch, for tools/demo_summary.py), $log (emptied
# $work/demo.log), the array $opts (the --cfg-options that point the config at $data, plus
# DEMO_CFG_OPTIONS), and $precision, $precision_why and the array $amp (demo_precision).

demo_setup() {
  tag=$1
  py="${PYTHON:-.venv/bin/python}"
  data="${DEMO_DATA:-data/demo}"
  procs="${DEMO_PROCS:-2}"
  start=$SECONDS
  started=$(date +%s.%N)
  if [ ! -x "$py" ]; then
    echo "$tag: no $py yet, installing first (make install)"
    bash scripts/install.sh
  fi
  # The generator writes both the COCO boxes and the semantic masks of the same scenes.
  if [ ! -f "$data/annotations/instances_test.json" ] || [ ! -f "$data/splits/test.txt" ]; then
    echo "$tag: generating the synthetic scenes into $data"
    "$py" tools/make_demo_data.py --out "$data"
  fi
  rm -rf "$work"
  mkdir -p "$work"
  log="$work/demo.log"
  : >"$log"
  opts=()
  demo_precision
}

# demo_precision: sets $precision (bfloat16 or float32), $precision_why (why float32: "asked"
# by DEMO_AMP=0, or "no-bf16" on a CPU without it) and the array $amp (tools/train.py's --amp,
# or nothing). bfloat16 autocast where the CPU computes in bfloat16 (AVX512-BF16 or AMX on x86,
# BF16 on Arm): about 1.5x the images per second of float32. A CPU without it trains in
# float32: on an AMD EPYC (AVX2), 2.2-2.5x the time of an iteration in bfloat16 on the Intel CPU
# the demos' schedules were set on (docs/training.md).
# DEMO_AMP=0 trains in float32, DEMO_AMP=1 insists on bfloat16.
demo_precision() {
  amp=()
  precision=float32
  precision_why=no-bf16
  case "${DEMO_AMP:-auto}" in
    0) precision_why=asked ;;
    1) amp=(--amp) precision=bfloat16 precision_why= ;;
    *)
      if grep -qwE 'avx512_bf16|amx_bf16|bf16' /proc/cpuinfo 2>/dev/null; then
        amp=(--amp) precision=bfloat16 precision_why=
      fi
      ;;
  esac
}

# demo_expect BF16_MINUTES FP32_MINUTES: the training time to announce, for $precision.
demo_expect() {
  case "$precision/$precision_why" in
    bfloat16/*) echo "$1 minutes on 2 cores in bfloat16, by the hour" ;;
    float32/asked) echo "float32 as DEMO_AMP=0 asks, up to $2 minutes on 2 cores" ;;
    *) echo "$2 minutes on 2 cores in float32: this CPU has no bfloat16 instructions" ;;
  esac
}

# demo_options KEY=VALUE...: the config overrides (data root) this demo needs for $data.
demo_options() {
  local extra=()
  if [ "$data" != data/demo ]; then
    extra=("$@")
  fi
  # shellcheck disable=SC2206  # DEMO_CFG_OPTIONS is a space-separated list by design
  extra+=(${DEMO_CFG_OPTIONS:-})
  opts=()
  if [ ${#extra[@]} -gt 0 ]; then
    opts=(--cfg-options "${extra[@]}")
  fi
}

# demo_failed WHAT STATUS: say which step failed, show its error (the tools' one-sentence
# `error:` lines, else the end of $log) and exit with STATUS.
demo_failed() {
  local what=$1 status=$2
  if [ -n "${drawing:-}" ]; then  # a drawing started by demo_draw has no one to wait for it
    kill "$drawing" 2>/dev/null || true
  fi
  echo "$tag: $what failed (exit status $status); the full output is in $log" >&2
  if grep -q '^error: ' "$log"; then
    grep '^error: ' "$log" | tail -n 5 >&2
  else
    tail -n 30 "$log" >&2
  fi
  exit "$status"
}

# demo_run WHAT CMD...: run CMD with its output appended to $log.
demo_run() {
  local what=$1 status=0
  shift
  "$@" >>"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    demo_failed "$what" "$status"
  fi
}

# demo_show_progress: copy stdin (the training's output) to $log, except the progress lines
# (`train <i>/<N> ...`), which go to the terminal instead: redrawn in place on a terminal,
# printed as they come otherwise (the hook then writes one every ~10% of the run).
demo_show_progress() {
  local line drawn=
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == 'train '[0-9]*/[0-9]* ]]; then
      if [ -t 1 ]; then
        printf '\r%s: %s\033[K' "$tag" "$line"
        drawn=1
      else
        printf '%s: %s\n' "$tag" "$line"
      fi
    else
      printf '%s\n' "$line" >&3
    fi
  done 3>>"$log"
  if [ -n "$drawn" ]; then
    printf '\n'
  fi
}

# demo_train CONFIG WORK_DIR PORT: train from scratch into WORK_DIR (emptied by demo_setup),
# showing the progress bar; sets $checkpoint to the path of the last checkpoint. PORT (the
# torchrun rendezvous port) can be overridden by the PORT environment variable.
demo_train() {
  local config=$1 work=$2 port=$3 status=0
  # One thread per process: two processes on two cores beat one process with two threads, and
  # oversubscribed OpenMP threads crawl when the machine is busy.
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  # glibc's malloc keeps the memory one iteration frees for the next instead of returning it to
  # the system (and taking fresh, zero-filled pages back every iteration): an mmap threshold at
  # its 32 MiB maximum, no trimming, the heap grown 64 MiB at a time. The processes then keep
  # their peak memory until they end. DEMO_MALLOC=system leaves glibc's defaults
  # (docs/training.md).
  if [ "${DEMO_MALLOC:-keep}" != system ]; then
    export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 \
      MALLOC_TOP_PAD_=67108864
    echo "$tag: malloc keeps freed memory (MALLOC_*_ set; DEMO_MALLOC=system for glibc's defaults)"
  fi
  if [ -t 1 ]; then  # a line every iteration, which demo_show_progress redraws in place
    export MOBILEONE_DENSE_PROGRESS=each
  fi
  # tools/test.py evaluates the trained model next; without this mmengine would also validate
  # at the last iteration (val_interval past the end does not stop that), costing 10-20 s.
  local no_val=(--cfg-options train_cfg.val_begin=1000000000)
  if [ "$procs" -gt 1 ]; then
    PYTHON="$py" PORT="${PORT:-$port}" nice -n 5 bash tools/dist_train.sh "$config" "$procs" \
      --work-dir "$work" --progress "${amp[@]}" "${opts[@]}" "${no_val[@]}" 2>&1 \
      | demo_show_progress || status=$?
  else
    nice -n 5 "$py" tools/train.py "$config" --work-dir "$work" --progress "${amp[@]}" \
      "${opts[@]}" "${no_val[@]}" 2>&1 | demo_show_progress || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    demo_failed training "$status"
  fi
  checkpoint=$(cat "$work/last_checkpoint")
}

# demo_inputs DIR IMAGE...: a folder of links to the given images, for tools/image_demo.py.
demo_inputs() {
  local dir=$1 image
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  for image in "$@"; do
    ln -s "$(cd "$(dirname "$image")" && pwd)/$(basename "$image")" "$dir/$(basename "$image")"
  done
}

# demo_draw WHAT PICTURES: in the background, draw what the trained $checkpoint of $config
# sees in the images of $work/demo_inputs into PICTURES (tools/image_demo.py), then the
# training curves into $work/curves.png (tools/analyze_logs.py). It runs beside the evaluation,
# each on one core (OMP_NUM_THREADS=1 since demo_train), which saves 10-15 s of the demo; its
# output goes to $log when demo_finish has waited for it.
demo_draw() {
  drawing_what=$1
  local pictures=$2
  ("$py" tools/image_demo.py "$work/demo_inputs" "$config" "$checkpoint" --out-dir "$pictures" \
    && "$py" tools/analyze_logs.py "$work" --out "$work/curves.png") >"$work/drawing.log" 2>&1 &
  drawing=$!
}

# demo_finish DEMO PICTURES TRAINED: wait for demo_draw, write $work/summary.json
# (tools/demo_summary.py, which prints the result lines) and say where everything is.
# TRAINED: $SECONDS when training ended.
demo_finish() {
  local demo=$1 pictures=$2 trained=$3 status=0
  wait "$drawing" || status=$?
  drawing=
  cat "$work/drawing.log" >>"$log" && rm -f "$work/drawing.log"
  if [ "$status" -ne 0 ]; then
    demo_failed "$drawing_what" "$status"
  fi
  "$py" tools/demo_summary.py write "$work" --demo "$demo" --tag "$tag" \
    --started "$started" --train-time $((trained - start)) --pictures "$pictures" \
    --log "$log"
}
