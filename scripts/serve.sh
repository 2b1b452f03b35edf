#!/usr/bin/env bash
# Builds and serves the app with `trunk serve` on http://127.0.0.1:8080/ ($PORT to change it),
# rebuilding and reloading the page when src/, static/ or index.html change. Installs what it
# needs, and puts CIFAR-10 under data/ (git-ignored) so the page can load it by URL:
#   CIFAR10_TARBALL=/path/cifar-10-binary.tar.gz scripts/serve.sh   # use a local tarball
#   scripts/serve.sh                                              # download the official one
# The build is cargo's release profile: the debug wasm spends ~360 ms more CPU per training
# step (BENCHMARKS.md), which on a real GPU would be the bottleneck, and rebuilds no faster. It shares its cache
# with scripts/build-release.sh (and the tests), so only the first build is slow.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cifar10-webgpu/target-wasm}

official=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
if [ ! -f data/cifar-10-batches-bin/test_batch.bin ]; then
  mkdir -p data
  tarball=${CIFAR10_TARBALL:-}
  if [ -z "$tarball" ] && [ -x ../shared/cifar10/build.sh ]; then
    tarball=$(../shared/cifar10/build.sh | tail -n 1)   # the development machines' stand-in
  fi
  if [ -z "$tarball" ]; then
    echo "[serve] downloading $official (163 MB)"
    curl -fL --retry 3 -o data/cifar-10-binary.tar.gz "$official" || {
      echo "[serve] download failed: set CIFAR10_TARBALL=/path/to/cifar-10-binary.tar.gz" >&2; exit 1; }
    tarball=data/cifar-10-binary.tar.gz
  fi
  tar -xzf "$tarball" -C data
fi
port=${PORT:-8080}
echo
echo "  Open http://127.0.0.1:$port/ in Chrome or Edge (WebGPU), then: Load from URL -> Train."
echo "  (The first run installs tools and builds for about 20 minutes on 2 cores; later ones reuse the cache.)"
echo
exec trunk serve --release --address 127.0.0.1 --port "$port"
