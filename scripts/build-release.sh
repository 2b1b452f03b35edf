#!/usr/bin/env bash
# Builds the self-contained static site into dist/ (or $DIST), optimised with wasm-opt, for any
# sub-path:   scripts/build-release.sh [PUBLIC_URL]      e.g. /cifar10-webgpu/  (default /)
# With CIFAR10_TARBALL=/path/cifar-10-binary.tar.gz the shards are included under
# data/cifar-10-batches-bin/ (+178 MB); without, visitors load the data from a file or from
# ?data=<any CORS-enabled URL>. WASM_OPT=0 skips optimisation (faster, larger).
# The GitHub Pages workflow (.github/workflows/pages.yml) runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
public_url=${1:-/}
dist=${DIST:-$root/dist}
scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cifar10-webgpu/target-wasm}

index=index.html
if [ "${WASM_OPT:-1}" != 0 ]; then
  # Debian's binaryen (108) produces a wasm that fails to load; npm's binaryen 132 works.
  # Installed once outside the clone, like the cargo caches.
  tools=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}/tools
  if [ ! -x "$tools/node_modules/.bin/wasm-opt" ]; then
    npm install --silent --prefix "$tools" binaryen@132.0.0 >/dev/null
  fi
  export PATH="$tools/node_modules/.bin:$PATH"
  index=.index.release.html
  sed 's/data-wasm-opt="0"/data-wasm-opt="z"/' index.html > "$index"
  trap 'rm -f "$root/.index.release.html"' EXIT
fi
CIFAR10_LINK_DATA=0 trunk build --release --public-url "$public_url" --dist "$dist" "$index"

if [ -n "${CIFAR10_TARBALL:-}" ]; then
  scripts/bundle-data.sh "$dist" "$CIFAR10_TARBALL"
fi
wasm=$(ls "$dist"/*.wasm)
echo "site: $dist ($(du -sh "$dist" | cut -f1)); wasm $(du -h "$wasm" | cut -f1), gzipped $(gzip -c "$wasm" | wc -c | awk '{printf "%.1f MB", $1/1e6}')"
