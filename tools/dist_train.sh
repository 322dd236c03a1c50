#!/usr/bin/env bash
# Data-parallel training on NUM_PROCESSES GPUs (or CPU processes, gloo), through torchrun and
# mmengine's Runner (MMDistributedDataParallel):
#
#   bash tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options]
#
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR and PORT on each, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
default_python=python
[ -x "$root/.venv/bin/python" ] && default_python="$root/.venv/bin/python"
PYTHON=${PYTHON:-$default_python}

exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$root/tools/train.py" "$CONFIG" --launcher pytorch "$@"
