# Shared steps of scripts/demo_detection.sh and scripts/demo_segmentation.sh (sourced, not run).
#
# Environment read here: PYTHON (default .venv/bin/python), DEMO_DATA (default data/demo,
# generated when missing), DEMO_PROCS (training processes, default 2: one per core,
# data-parallel through tools/dist_train.sh; 1 trains in one process) and DEMO_CFG_OPTIONS
# (extra `--cfg-options` for train and test, e.g. a shorter schedule).
#
# After `demo_setup TAG`: $py, $data, $procs, $start (seconds) and the array $opts (the
# --cfg-options that point the config at $data, plus DEMO_CFG_OPTIONS).

demo_setup() {
  tag=$1
  py="${PYTHON:-.venv/bin/python}"
  data="${DEMO_DATA:-data/demo}"
  procs="${DEMO_PROCS:-2}"
  start=$SECONDS
  if [ ! -x "$py" ]; then
    echo "$tag: no $py yet, installing first (make install)"
    bash scripts/install.sh
  fi
  # The generator writes both the COCO boxes and the semantic masks of the same scenes.
  if [ ! -f "$data/annotations/instances_val.json" ] || [ ! -f "$data/splits/val.txt" ]; then
    echo "$tag: generating the synthetic scenes into $data"
    "$py" tools/make_demo_data.py --out "$data"
  fi
  opts=()
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

# demo_train CONFIG WORK_DIR PORT: train from scratch into WORK_DIR (emptied first); sets
# $checkpoint to the path of the last checkpoint. PORT (the torchrun rendezvous port) can be
# overridden by the PORT environment variable.
demo_train() {
  local config=$1 work=$2 port=$3
  # One thread per process: two processes on two cores beat one process with two threads, and
  # oversubscribed OpenMP threads crawl when the machine is busy. glibc hands the large
  # activation buffers of every iteration back to the kernel and faults them in again; keeping
  # them in the heap saves a few percent of each iteration.
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
  rm -rf "$work"
  if [ "$procs" -gt 1 ]; then
    PYTHON="$py" PORT="${PORT:-$port}" nice -n 5 bash tools/dist_train.sh "$config" "$procs" \
      --work-dir "$work" "${opts[@]}"
  else
    nice -n 5 "$py" tools/train.py "$config" --work-dir "$work" "${opts[@]}"
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
