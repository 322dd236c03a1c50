#!/usr/bin/env bash
# Each demo several times in a row, the way the README's consecutive runs are measured: the
# detection demo N times, then the segmentation demo N times, each run in a work dir of its own
# (work_dirs/demo_runs/detection_1 ... segmentation_N), then one table of every run, whether
# it kept to the time limit, and per demo a line counting the runs that met the target.
#
#   bash scripts/demo_runs.sh [N] [detection|segmentation|both]     (make demo-runs RUNS=N)
#
# N defaults to 3, the demos to both. Environment: DEMO_RUNS_DIR (default work_dirs/demo_runs),
# DEMO_TIME_LIMIT (seconds each run should take at most, default 480: the demos' 8 minutes),
# and what scripts/demo_detection.sh reads (PYTHON, DEMO_DATA, DEMO_PROCS, DEMO_AMP,
# DEMO_CFG_OPTIONS). Nothing else should run meanwhile: the wall times are the point.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
which=${2:-both}
usage="usage: bash scripts/demo_runs.sh [N] [detection|segmentation|both]"
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "demo_runs: the number of runs must be a whole number from 1, not '$runs'; $usage" >&2
  exit 2
fi
case $which in
  detection | segmentation) demos=("$which") ;;
  both) demos=(detection segmentation) ;;
  *)
    echo "demo_runs: '$which' is not a demo: choose detection, segmentation or both; $usage" >&2
    exit 2
    ;;
esac
out="${DEMO_RUNS_DIR:-work_dirs/demo_runs}"
limit="${DEMO_TIME_LIMIT:-480}"
py="${PYTHON:-.venv/bin/python}"

summaries=()
for demo in "${demos[@]}"; do
  for i in $(seq 1 "$runs"); do
    echo "== demo_runs: $demo, run $i of $runs, into $out/${demo}_$i"
    WORK_DIR="$out/${demo}_$i" bash "scripts/demo_$demo.sh"
    summaries+=("$out/${demo}_$i")
  done
done
echo
"$py" tools/demo_summary.py table --time-limit "$limit" "${summaries[@]}"
