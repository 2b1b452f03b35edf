#!/usr/bin/env bash
# Adds CIFAR-10's binary shards to a built site, under DIST/data/cifar-10-batches-bin/ where the
# page's default *Load from URL* looks (+178 MB):
#   scripts/bundle-data.sh DIST /path/cifar-10-binary.tar.gz
# scripts/build-release.sh runs it when CIFAR10_TARBALL is set (the GitHub Pages workflow sets
# it to the official tarball); the end-to-end tests run it on a copy of the tested build.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 DIST cifar-10-binary.tar.gz" >&2; exit 2; }
dist=$1
tarball=$2
mkdir -p "$dist/data"
tar -xzf "$tarball" -C "$dist/data"
for f in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin batches.meta.txt; do
  [ -s "$dist/data/cifar-10-batches-bin/$f" ] || { echo "$tarball has no cifar-10-batches-bin/$f" >&2; exit 1; }
done
