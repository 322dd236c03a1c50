#!/usr/bin/env bash
# Installs the mobileone-dense stack into ./.venv (CPU build).
#
#   torch 2.13.0 (CPU) -> mmcv 2.1.0 built from source with its compiled ops
#   -> mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2 -> this project (editable, [test] extras)
#
# Idempotent: a stamp file records a hash of this script and pyproject.toml; when neither
# changed and the stack imports, the script exits in seconds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.mobileone-dense-installed"
want=$(cat "$0" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c "import mobileone_dense, mmcv.ops, mmdet, mmseg" 2>/dev/null; then
  echo "install: $venv is up to date"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "install: creating $venv"
  "$python" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }
# torch 2.13 declares setuptools>=77 (for building C++ extensions and torch.compile, neither of
# which the toolkit does at run time); mmengine 0.10.7 needs the pkg_resources module that only
# setuptools<70 still ships (for mmdet::/mmseg:: base configs). pip reports the clash every time
# it installs setuptools<70; this says it once, in one line.
pin_setuptools() {
  local out status=0
  out=$(pip install -q "setuptools<70" "$@" 2>&1) || status=$?
  printf '%s\n' "$out" | grep -v -e '^$' -e "dependency resolver does not currently" \
    -e "torch .* requires setuptools" || true
  return "$status"
}

echo "install: torch 2.13.0 (CPU)"
pip install -q "torch==2.13.0"
"$venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" || {
  echo "install: torch 2.13.0 (CPU) is required; found another version in $venv" >&2; exit 1; }
# mmcv's setup.py imports torch and must see it (--no-build-isolation); old setuptools keeps
# pkg_resources, which mmengine needs at run time for mmdet::/mmseg:: base configs.
pin_setuptools wheel ninja psutil numpy
echo "install: setuptools<70 for mmengine's pkg_resources (torch's setuptools>=77 is for building" \
     "extensions, which nothing here does at run time)"
if ! "$venv/bin/python" -c "import mmcv.ops" 2>/dev/null; then
  echo "install: building mmcv 2.1.0 with its ops (10-30 minutes on 2 cores the first time;"
  echo "         pip caches the wheel, so later installs are fast)"
  MMCV_WITH_OPS=1 pip install --no-build-isolation "mmcv==2.1.0"
  "$venv/bin/python" -c "import mmcv.ops" || {
    echo "install: mmcv 2.1.0 was installed without its compiled ops; remove it from pip's cache" \
         "(pip cache remove mmcv) and run 'make install' again." >&2
    exit 1
  }
fi
echo "install: mmengine, mmdet, mmsegmentation and mobileone-dense"
pip install -q "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" ftfy regex
pip install -q --no-build-isolation -e "$root[test]"
# MediaPipe Tasks (the client Android, iOS and web apps run the LiteRT files with) and its
# metadata writer. Without its dependencies: it asks for opencv-contrib-python, a second cv2
# beside mmcv's opencv-python, and for sounddevice, both for parts the toolkit does not use;
# what it needs besides (absl-py, flatbuffers, numpy) is listed here.
echo "install: mediapipe 1.2.2 (without its OpenCV; mmcv's serves)"
pip install -q "absl-py>=2.3,<3" "flatbuffers>=25.9,<26"
pip install -q --no-deps "mediapipe==1.2.2"
pin_setuptools  # in case a package above pulled in a newer one
"$venv/bin/python" -c "import mobileone_dense, mmcv.ops, mmdet, mmseg, mediapipe.tasks.python.vision"
echo "$want" > "$stamp"
echo "install: done ($venv)"
