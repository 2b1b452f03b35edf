#!/usr/bin/env bash
# The CPU engine on several workers (issue 33), side by side on this machine: images/s of the
# training step with 1 and with N workers (default 1 2, up to the cores here), and where a
# step's time goes across them (compute in each worker, the exchange, idle), for
#   page    the release site in headless Chromium without WebGPU, ?device=cpu&cpu_workers=N, the
#           Benchmark button (bench/cpu_page.mjs), synthetic images
#   native  `train --bench N --cpu-replicas N` (burn-flex, release), the data's images
# at each width and batch (default: width 0.125 batch 32 and 64, width 0.25 batch 128).
# Prints one line per figure and writes them with the raw outputs to bench/results/workers/
# (or $OUT). Ratios only mean something on a quiet machine: the load before each figure is kept.
#
#   bench/workers.sh                        ~6 min of measuring after the builds
#   DIST=/path/to/site bench/workers.sh     reuse a built site (scripts/build-release.sh /);
#                                           PUBLIC_PATH=/cifar10-webgpu/ for one built for that path
#   CONFIGS="0.125:64" WORKERS="1 2" STEPS=10 PARTS="page native" bench/workers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
tools=$cache/tools
out=${OUT:-$root/bench/results/workers}
CONFIGS=${CONFIGS:-0.125:32 0.125:64 0.25:128}
WORKERS=${WORKERS:-1 2}
STEPS=${STEPS:-10}
PARTS=${PARTS:-page native}
has() { [[ " $PARTS " == *" $1 "* ]]; }
say() { printf '\033[1;34m[workers.sh]\033[0m %s\n' "$*" >&2; }
mkdir -p "$out"
find "$out" -maxdepth 1 -type f -delete

# shellcheck source=bench/page_site.sh
source bench/page_site.sh
if has page; then page_site workers; fi
if has native; then
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target} cargo build --release --bin train >&2
  train=${CARGO_TARGET_DIR:-$cache/target}/release/train
  data=${CIFAR10_TARBALL:-$HOME/.cache/cifar10-data/cifar-10-binary.tar.gz}
  [ -e "$data" ] || data=${CIFAR10_SHARED:-$root/../shared/cifar10}/sample
fi
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) threads" | tee "$out/machine.txt"

for cfg in $CONFIGS; do
  w=${cfg%:*}; b=${cfg#*:}
  for n in $WORKERS; do
    if has page; then
      f="$out/page-w$w-b$b-n$n.txt"
      printf '# load before: %s\n' "$(cut -d' ' -f1 /proc/loadavg)" > "$f"
      TOOLS_DIR=$tools node bench/cpu_page.mjs "${page_url}?device=cpu&width=$w&batch=$b&bench_steps=$STEPS&conv=burn&cpu_workers=$n" >> "$f" 2>&1 || echo FAILED >> "$f"
      echo "page   width $w batch $b, $n worker(s): $(grep -oE '[0-9.]+ images/s' "$f" | head -1) $(grep -oE '[0-9]+ workers: .*' "$f" | head -1) (load $(head -1 "$f" | cut -d' ' -f4))" | tee -a "$out/summary.txt"
    fi
    if has native; then
      f="$out/native-w$w-b$b-n$n.txt"
      printf '# load before: %s\n' "$(cut -d' ' -f1 /proc/loadavg)" > "$f"
      "$train" --data "$data" --width "$w" --batch "$b" --bench "$STEPS" --cpu-replicas "$n" >> "$f" 2>&1 || echo FAILED >> "$f"
      echo "native width $w batch $b, $n replica(s): $(grep -oE '[0-9.]+ images/s' "$f" | head -1) $(grep -oE '[0-9]+ workers: [^(]*' "$f" | head -1)(load $(head -1 "$f" | cut -d' ' -f4))" | tee -a "$out/summary.txt"
    fi
  done
done
