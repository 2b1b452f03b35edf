#!/usr/bin/env bash
# The main thread's long tasks and the step time with the engine in its worker and on the
# page's thread (issue 23), at the two sizes of BENCHMARKS.md, on the release site (built
# unless DIST names one), in headless Chromium.
#   bench/responsiveness.sh            (MODES=1,0: worker, then ?worker=0)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
if [ -z "${DIST:-}" ]; then
  DIST=$root/target/responsiveness-dist
  DIST=$DIST CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target-wasm} scripts/build-release.sh /
fi
if [ ! -d "$cache/tools/node_modules/playwright-core" ]; then
  npm install --silent --prefix "$cache/tools" playwright-core@1.64.1 >/dev/null
fi
shared=${CIFAR10_SHARED:-$root/../shared/cifar10}
site=$(mktemp -d)
ln -s "$DIST"/* "$site"/
ln -s "$(cd "$shared/sample" && pwd)" "$site/samples"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$site"' EXIT
sleep 1
export TOOLS_DIR=$cache/tools
node bench/responsiveness.mjs "http://127.0.0.1:$port" 'width=0.0625&batch=16' 20 512
node bench/responsiveness.mjs "http://127.0.0.1:$port" 'width=0.25&batch=32' 5 256
