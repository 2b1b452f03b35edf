#!/usr/bin/env bash
# The peer run beside ours (issue 21): TensorFlow.js 4.22 (WebGPU backend) training the same
# ResNet-9 in the same headless Chromium, measured by the same bench/page_profile.mjs.
#   bench/peer.sh ['width=0.0625&batch=16'] [out.json]
# TF.js comes from npm into the build cache's tools folder; nothing of it is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
query=${1:-width=0.0625&batch=16}
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
tools=$cache/tools
[ -d "$tools/node_modules/@tensorflow/tfjs-backend-webgpu" ] ||
  npm install --silent --prefix "$tools" @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-webgpu@4.22.0 >/dev/null
[ -d "$tools/node_modules/playwright-core" ] || npm install --silent --prefix "$tools" playwright-core@1.64.1 >/dev/null
site=$(mktemp -d)
cp bench/peer/tfjs.html "$site/index.html"
cp "$tools/node_modules/@tensorflow/tfjs/dist/tf.min.js" "$tools/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js" "$site/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$site"' EXIT
sleep 1
TOOLS_DIR=$tools node bench/page_profile.mjs "http://127.0.0.1:$port/?$query" ${2:-}
