#!/usr/bin/env bash
# Our CPU convolutions (issue 32) side by side on this machine, one thread each: images/s of the
# training step (forward, backward, SGD) at batch 64, widths 0.125 and 0.25, for
#   native-burn     `train --bench N --conv burn`   (burn-flex's own convolutions, release build)
#   native-direct   `train --bench N --conv direct` (our kernels on the best SIMD level here)
#   native-direct-LEVEL  the same on a lower x86-64 level (CIFAR10_SIMD=LEVEL; LEVELS, default v3:
#                   AVX2 + FMA, to show what AVX-512 adds)
#   pytorch         bench/pytorch_cpu_step.py --threads 1 (the same model; torch from PyPI)
#   page-burn, page-direct  the site in headless Chromium without WebGPU, ?device=cpu&cpu_workers=1
#                   &conv=C, the Benchmark button (bench/cpu_page.mjs), synthetic images
# ROUNDS rounds (default 2), every figure once a round in the order above, so that a change in the
# machine's speed touches all of them; the summary gives each round's figure and the median.
# Writes the raw outputs and summary.md to bench/results/direct/ (or $OUT).
#
#   bench/direct.sh                         ~8 min of measuring after the builds
#   DIST=/path/to/site bench/direct.sh      reuse a built site (scripts/build-release.sh /); with
#                                           PUBLIC_PATH=/cifar10-webgpu/ for one built for that path
#   WIDTHS="0.25" ROUNDS=3 STEPS=20 PARTS="native pytorch page" LEVELS="v3 v2" bench/direct.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
tools=$cache/tools
out=${OUT:-$root/bench/results/direct}
WIDTHS=${WIDTHS:-0.125 0.25}
BATCH=${BATCH:-64}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-20}
PAGE_STEPS=${PAGE_STEPS:-10}
LEVELS=${LEVELS:-v3}
PARTS=${PARTS:-native pytorch page}
has() { [[ " $PARTS " == *" $1 "* ]]; }
say() { printf '\033[1;34m[direct.sh]\033[0m %s\n' "$*" >&2; }
mkdir -p "$out"
find "$out" -maxdepth 1 -type f -delete

if has pytorch && ! python3 -c 'import torch' 2>/dev/null; then
  say "installing torch from PyPI"
  python3 -m pip install -q torch numpy >&2
fi
# shellcheck source=bench/page_site.sh
source bench/page_site.sh
if has page; then page_site direct; fi
if has native; then
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target} cargo build --release --bin train >&2
  train=${CARGO_TARGET_DIR:-$cache/target}/release/train
  data=${CIFAR10_SHARED:-$root/../shared/cifar10}/sample
fi
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (src/ modified)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) threads; AVX-512: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
  if has pytorch; then echo "torch: $(python3 -c 'import torch; print(torch.__version__, "mkldnn", torch.backends.mkldnn.is_available())')"; fi
  if has page; then echo "site: $DIST; chromium: $(chromium --version 2>/dev/null | head -1)"; fi
} | tee "$out/machine.txt"

# One figure: measure NAME COMMAND...: the output in $out/NAME-rR.txt after the load before it;
# prints and keeps "NAME images/s".
measure() {
  local name=$1; shift
  local f="$out/$name-r$round.txt"
  printf '# load before: %s\n# command: %s\n' "$(cut -d' ' -f1 /proc/loadavg)" "$*" > "$f"
  "$@" >> "$f" 2>&1 || echo "FAILED (exit $?)" >> "$f"
  local ips
  ips=$(grep -oE '[0-9.]+ images/s' "$f" | head -1 | cut -d' ' -f1)
  echo "$name ${ips:-FAILED} (load $(sed -n 1p "$f" | cut -d' ' -f4))" | tee -a "$out/figures.txt" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  for w in $WIDTHS; do
    cfg="w$w"
    if has native; then
      measure "native-burn-$cfg" "$train" --data "$data" --width "$w" --batch "$BATCH" --bench "$STEPS" --conv burn
      measure "native-direct-$cfg" "$train" --data "$data" --width "$w" --batch "$BATCH" --bench "$STEPS" --conv direct
      for level in $LEVELS; do
        measure "native-direct-$level-$cfg" env CIFAR10_SIMD="$level" "$train" --data "$data" --width "$w" --batch "$BATCH" --bench "$STEPS" --conv direct
      done
    fi
    if has pytorch; then
      measure "pytorch-$cfg" python3 bench/pytorch_cpu_step.py --width "$w" --batch "$BATCH" --steps "$STEPS" --warmup 5 --threads 1
    fi
    if has page; then
      for conv in burn direct; do
        measure "page-$conv-$cfg" env TOOLS_DIR="$tools" node bench/cpu_page.mjs "${page_url}?device=cpu&cpu_workers=1&width=$w&batch=$BATCH&bench_steps=$PAGE_STEPS&conv=$conv"
      done
    fi
  done
done

# The summary: each figure's rounds and median, then the ratios the issue sets targets for.
OUT_DIR=$out python3 - <<'EOF' | tee "$out/summary.md"
import os, re, statistics
out = os.environ["OUT_DIR"]
rows = {}
for line in open(os.path.join(out, "figures.txt")):
    name, ips = line.split()[:2]
    rows.setdefault(name, []).append(None if ips == "FAILED" else float(ips))
med = {k: statistics.median([v for v in vs if v is not None]) if any(v is not None for v in vs) else None for k, vs in rows.items()}
print("| figure (images/s, batch 64, one thread) | rounds | median |\n| --- | --- | ---: |")
for k, vs in rows.items():
    print(f"| {k} | {', '.join('failed' if v is None else f'{v:.0f}' for v in vs)} | {med[k]:.0f} |" if med[k] else f"| {k} | failed | |")
print()
for w in sorted({re.sub(r'.*-w', '', k) for k in rows}):
    def ratio(a, b):
        x, y = med.get(f"{a}-w{w}"), med.get(f"{b}-w{w}")
        return f"{x / y:.2f}x" if x and y else "n/a"
    print(f"- width {w}: native direct / PyTorch 1 thread {ratio('native-direct', 'pytorch')} (target >= 0.6); "
          f"native direct / burn {ratio('native-direct', 'native-burn')}; page direct / page burn {ratio('page-direct', 'page-burn')}")
EOF
