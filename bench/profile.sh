#!/usr/bin/env bash
# Where the page's own CPU goes during its step benchmark (issue 21): builds the site without
# wasm-opt (wasm function names kept) unless DIST names a built one, serves it on 127.0.0.1,
# and runs bench/page_profile.mjs (CPU of Chromium's processes from /proc, the page's WebGPU
# call counts, a DevTools CPU profile) in headless Chromium.
#   bench/profile.sh ['width=0.0625&batch=16'] [out.json]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
query=${1:-width=0.0625&batch=16}
out=${2:-}
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
if [ -z "${DIST:-}" ]; then
  DIST=$root/target/profile-dist
  WASM_OPT=0 DIST=$DIST CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target-wasm} scripts/build-release.sh /
fi
if [ ! -d "$cache/tools/node_modules/playwright-core" ]; then
  npm install --silent --prefix "$cache/tools" playwright-core@1.64.1 >/dev/null
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$DIST" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
TOOLS_DIR=$cache/tools node bench/page_profile.mjs "http://127.0.0.1:$port/?$query" $out
