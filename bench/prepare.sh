#!/usr/bin/env bash
# Fills the git-ignored .bench/ with what bench/gpu.sh needs on the GPU machine: the native
# `train` binary with burn's wgpu backend (x86-64, stripped), the CIFAR-10 pack (18 MB) and its
# unpacker; and .gl/ with the Vulkan loader (Debian packages). Carried: .bench and .gl.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cifar10-webgpu/target}
mkdir -p .bench .gl
cargo build --release --features wgpu --bin train
# Stripped and gzipped (75 MB -> 18 MB): the carried tree must stay under 64 MiB.
strip -o .bench/train "$CARGO_TARGET_DIR/release/train"
gzip -f .bench/train
# The same with burn's fusion and autotune, in its own target dir (other burn features).
CARGO_TARGET_DIR="$CARGO_TARGET_DIR-fast" cargo build --release --features fast --bin train
strip -o .bench/train-fast "$CARGO_TARGET_DIR-fast/release/train"
gzip -f .bench/train-fast
cp ../shared/cifar10/cifar10-jpeg.pack ../shared/cifar10/unpack.py ../shared/cifar10/SHA256SUMS .bench/
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .bench .gl
