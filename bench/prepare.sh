#!/usr/bin/env bash
# Fills the git-ignored .bench/ with what bench/gpu.sh needs on the GPU machine: the native
# `train` binary (x86-64, stripped, gzipped) with burn's wgpu backend + fusion + autotune, the
# CIFAR-10 pack (18 MB) and its unpacker; and .gl/ with the Vulkan loader (Debian packages).
# Carried: .bench and .gl (together under the 64 MiB limit). burn's CUDA backend, the obvious
# control, cannot be built here: cubecl-cuda's build downloads an LLVM bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
mkdir -p .bench .gl
rm -f .bench/train.gz   # the plain wgpu build: measured once (BENCHMARKS.md), no longer carried
# In its own target dir: burn is built with other features than the tests use.
CARGO_TARGET_DIR="$cache/target-fast" cargo build --release --features fast --bin train
strip -o .bench/train-fast "$cache/target-fast/release/train"
gzip -f .bench/train-fast
cp ../shared/cifar10/cifar10-jpeg.pack ../shared/cifar10/unpack.py ../shared/cifar10/SHA256SUMS .bench/
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .bench .gl
