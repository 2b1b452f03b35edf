#!/usr/bin/env bash
# The GPU measurement, on the lent GPU machine, in calls of at most ~9.5 minutes each.
#
# Prepared here by bench/prepare.sh, which fills the git-ignored .bench/ with the native `train`
# binary (gzipped: wgpu + fusion + autotune), the data pack and its unpacker, and .gl/ with the
# Vulkan loader. Carry [".bench", ".gl"] and run:
#
#   bash bench/gpu.sh           1. step benchmarks on Vulkan (fusion + autotune), with burn's
#                                  convolution and with `--conv im2col` (matmuls instead);
#                               2. with BENCH_PYTORCH=1, the PyTorch reference (24 epochs, fp32,
#                                  TF32 off; measured on 2026-11-27, so off by default);
#                               3. our recipe with the faster convolution over the longest schedule
#                                  that fits (24 epochs if they do; with BENCH_SECOND_CALL_S=N
#                                  counting N seconds of a resume call), state saved every epoch.
#   bash bench/gpu.sh resume    the next call on the same (still warm) machine: finishes the
#                               run from the saved state in /tmp/ours-state.
#   bash bench/gpu.sh conv      issue 22: each convolution algorithm (burn, gemm, im2col) per
#                               layer and pass, and the training step, at batch 512, width 1.
#
# BENCH_RECIPE=fast measures the `fast` preset instead (10 epochs, max LR 0.4, its tricks), ours
# and, with BENCH_PYTORCH=1, PyTorch's (`--recipe fast`): issue 14's GPU comparison against the
# seed rows of BENCHMARKS.md. It fits one call: ~10 x 35 s for ours on an H100, ~40 s PyTorch.
#
# Results under $OUT (log, per-epoch metrics CSV, machine). Budget: BENCH_BUDGET_S (560 s).
set -u
out=${OUT:-/tmp/bench-out}
mkdir -p "$out"
budget_s=${BENCH_BUDGET_S:-560}
start=$(date +%s)
left() { echo $(( budget_s - ($(date +%s) - start) )); }
mode=${1:-start}
state=/tmp/ours-state
recipe=${BENCH_RECIPE:-seed}
case "$recipe" in
  seed) max_epochs=24 pytorch_lr=0.055 ;;
  fast) max_epochs=10 pytorch_lr=0.4 ;;
  *) echo "BENCH_RECIPE is seed or fast, not $recipe"; exit 1 ;;
esac

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

[ -x /tmp/train-fast ] || { gunzip -c .bench/train-fast.gz > /tmp/train-fast && chmod +x /tmp/train-fast; }
data=/tmp/cifar10/cifar-10-batches-bin
[ -d "$data" ] || python3 .bench/unpack.py .bench/cifar10-jpeg.pack /tmp/cifar10 > /dev/null

run_ours() {  # backend [extra args]: the recipe, state saved after every epoch
  local backend=$1; shift
  timeout $(( $(left) > 30 ? $(left) : 30 )) /tmp/train-fast --data "$data" --backend "$backend" --gpu-memory \
    --max-minutes "$(python3 -c "print(max(0.5, ($(left) - 60) / 60))")" --save-state "$state" \
    --out "$out/ours" "$@" 2>&1 | tee -a "$out/ours.txt"
  cp "$out/ours/metrics.csv" "$out/ours-metrics.csv" 2>/dev/null
  rm -rf "$out/ours"
}

if [ "$mode" = conv ]; then
  # Issue 22's GPU figures in one call: every convolution algorithm per layer and pass at batch
  # 512, width 1, then the whole training step at batch 512, width 1 with each (fusion +
  # autotune). Roofline predictions: BENCHMARKS.md, "Implicit-GEMM convolutions".
  for backend in vulkan wgpu; do
    timeout 200 /tmp/train-fast --bench-layers --backend "$backend" --width 1 --batch 512 --reps 5 2>&1 | tee "$out/layers.txt"
    grep -q "^layer " "$out/layers.txt" && break
  done
  for conv in burn gemm im2col; do
    echo "== step, batch 512, width 1, --conv $conv ($(left)s left)"
    timeout $(( $(left) > 40 ? $(left) - 20 : 20 )) /tmp/train-fast --data "$data" --backend "$backend" --conv "$conv" \
      --batch 512 --width 1 --bench 10 2>&1 | tee "$out/step-$conv.txt"
  done
  echo "== done in $(( $(date +%s) - start ))s"
  exit 0
fi

if [ "$mode" = resume ]; then
  [ -f "$state/state.json" ] || { echo "no saved state in $state (a fresh machine?): run without 'resume'"; exit 1; }
  backend=$(cat /tmp/ours-backend) conv=$(cat /tmp/ours-conv)
  echo "== ours: resuming --backend $backend --conv $conv from $state ($(left)s left)"
  run_ours "$backend" --conv "$conv" --resume "$state"
  echo "== done in $(( $(date +%s) - start ))s"
  exit 0
fi

backend=vulkan
echo "== ours (wgpu/Vulkan + fusion + autotune): step benchmark ($(left)s left)"
timeout 120 /tmp/train-fast --data "$data" --backend vulkan --bench 10 2>&1 | tee "$out/ours-fast-bench.txt"
if grep -q "init failed" "$out/ours-fast-bench.txt"; then
  backend=wgpu   # whatever graphics API wgpu finds
  timeout 120 /tmp/train-fast --data "$data" --backend wgpu --bench 10 2>&1 | tee "$out/ours-fast-bench.txt"
fi
echo "== ours (the same, convolutions as im2col + matmul): step benchmark ($(left)s left)"
timeout 120 /tmp/train-fast --data "$data" --backend "$backend" --conv im2col --bench 10 2>&1 | tee "$out/ours-im2col-bench.txt"
step_ms() { grep -o '[0-9.]* ms/step' "$1" 2>/dev/null | head -1 | cut -d' ' -f1; }
a=$(step_ms "$out/ours-fast-bench.txt"); b=$(step_ms "$out/ours-im2col-bench.txt")
conv=burn
if [ -n "$b" ] && { [ -z "$a" ] || python3 -c "import sys; sys.exit(0 if $b < $a else 1)"; }; then conv=im2col; fi
echo "$backend" > /tmp/ours-backend; echo "$conv" > /tmp/ours-conv
echo "faster convolution: $conv (burn ${a:-?} ms/step, im2col ${b:-?} ms/step)" | tee -a "$out/machine.txt"

if [ "${BENCH_PYTORCH:-0}" = 1 ]; then
  echo "== pytorch: recipe $recipe, $max_epochs epochs ($(left)s left)"
  timeout 240 python3 bench/pytorch_reference.py "$data" --recipe "$recipe" --epochs "$max_epochs" \
    --max-lr "$pytorch_lr" --peak-epoch "$(python3 -c "print($max_epochs * 5 / 24)")" \
    --json "$out/pytorch-$recipe.json" 2>&1 | tee "$out/pytorch-$recipe.txt"
fi

# The longest complete One-Cycle schedule (24 epochs if they fit) in what is left of this call
# plus BENCH_SECOND_CALL_S seconds of a `resume` call (0: this call only): a finished shorter
# schedule gives a final accuracy, a cut 24-epoch one does not. An epoch is 97 steps at the
# benchmarked rate plus evaluation; the first also autotunes (~46 s on the H100).
ms=$(if [ "$conv" = im2col ]; then echo "$b"; else echo "${a:-3000}"; fi)
epochs=$(python3 -c "
epoch_s = ${ms:-3000} * 97 / 1000 * 1.15 + 6
avail = $(left) - 70 + ${BENCH_SECOND_CALL_S:-0} - (50 if ${BENCH_SECOND_CALL_S:-0} else 0)
print(max(1, min($max_epochs, int((avail - 50) / epoch_s))))")
rm -rf "$state"
echo "== ours: recipe $recipe over $epochs epochs on $backend, --conv $conv, state saved each epoch ($(left)s left)"
run_ours "$backend" --conv "$conv" --recipe "$recipe" --epochs "$epochs"
echo "== done in $(( $(date +%s) - start ))s; if unfinished, call again at once: bash bench/gpu.sh resume"
