#!/usr/bin/env bash
# Installs what the web demo (examples/web) and its test (tests/test_web_page.py) need:
#
#   Debian's chromium (/usr/bin/chromium, for the headless page test), only when it is missing
#   -> examples/web/node_modules from package-lock.json (npm ci): @mediapipe/tasks-vision, whose
#      wasm/ folder the page loads, and puppeteer-core (drives /usr/bin/chromium; it downloads
#      no browser of its own).
#
# Idempotent and silent when done: a stamp in node_modules records a hash of package.json and
# package-lock.json. Needs root (or sudo) for apt-get the first time, node >= 18 and npm.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/examples/web"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ]; then
  echo "install-web: Debian's chromium (for the headless test of examples/web)"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || {
      echo "install-web: installing chromium needs root: run 'apt-get install chromium' as root" >&2
      exit 1; }
    sudo="sudo"
  fi
  log=$(mktemp)
  if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
              --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1 \
      || [ ! -x "$chromium" ]; then
    cat "$log" >&2
    rm -f "$log"
    echo "install-web: apt-get could not install chromium ($chromium)" >&2
    exit 1
  fi
  rm -f "$log"
fi

command -v npm >/dev/null || {
  echo "install-web: npm is missing: install node (>= 18) and npm first" >&2; exit 1; }
stamp="$web/node_modules/.mobileone-dense-installed"
want=$(cat "$web/package.json" "$web/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && [ -f "$web/node_modules/@mediapipe/tasks-vision/wasm/vision_wasm_internal.wasm" ]; then
  exit 0
fi
echo "install-web: npm ci in examples/web (@mediapipe/tasks-vision, puppeteer-core)"
# puppeteer-core downloads no browser; the variable keeps any puppeteer package from trying.
(cd "$web" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error \
  >/dev/null) || {
  echo "install-web: npm ci failed in $web" >&2; exit 1; }
echo "$want" > "$stamp"
echo "install-web: done ($web/node_modules)"
