#!/usr/bin/env bash
# The whole GPU measurement in one call of at most ~9.5 minutes, on the lent GPU machine.
#
# Prepared here by bench/prepare.sh, which fills the git-ignored .bench/ with the native `train`
# binaries (gzipped: plain wgpu, and wgpu + fusion + autotune), the data pack and its unpacker,
# and .gl/ with the Vulkan loader. On the device:  bash bench/gpu.sh   (results under $OUT)
#
# 1. our step benchmark (ms/step, images/s) on Vulkan, plain and with fusion + autotune;
# 2. the PyTorch reference of the same recipe, 24 epochs, fp32 with TF32 off;
# 3. our full recipe with the faster build for as many epochs as fit in the remaining time
#    (24 if they do), with the GPU memory in use after each epoch.
set -u
out=${OUT:-/tmp/bench-out}
mkdir -p "$out"
budget_s=${BENCH_BUDGET_S:-560}
start=$(date +%s)
left() { echo $(( budget_s - ($(date +%s) - start) )); }

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

for b in train train-fast; do
  [ -f ".bench/$b.gz" ] && gunzip -c ".bench/$b.gz" > "/tmp/$b" && chmod +x "/tmp/$b"
done
python3 .bench/unpack.py .bench/cifar10-jpeg.pack /tmp/cifar10 > /dev/null
data=/tmp/cifar10/cifar-10-batches-bin

step_ms() { grep -o '[0-9.]* ms/step' "$1" 2>/dev/null | head -1 | cut -d' ' -f1; }
best=/tmp/train
backend=vulkan
echo "== ours (wgpu/Vulkan): step benchmark ($(left)s left)"
timeout 100 /tmp/train --data "$data" --backend vulkan --bench 10 2>&1 | tee "$out/ours-bench.txt"
if grep -q "init failed" "$out/ours-bench.txt"; then
  backend=wgpu   # whatever graphics API wgpu finds
  echo "== Vulkan unavailable; wgpu auto ($(left)s left)"
  timeout 100 /tmp/train --data "$data" --backend wgpu --bench 10 2>&1 | tee "$out/ours-bench.txt"
fi
if [ -x /tmp/train-fast ]; then
  echo "== ours (wgpu/Vulkan + fusion + autotune): step benchmark ($(left)s left)"
  timeout 120 /tmp/train-fast --data "$data" --backend "$backend" --bench 10 2>&1 | tee "$out/ours-fast-bench.txt"
  a=$(step_ms "$out/ours-bench.txt"); b=$(step_ms "$out/ours-fast-bench.txt")
  if [ -n "$b" ] && { [ -z "$a" ] || python3 -c "import sys; sys.exit(0 if $b < $a else 1)"; }; then best=/tmp/train-fast; fi
fi
echo "best build: $best" | tee -a "$out/machine.txt"

echo "== pytorch: 24 epochs ($(left)s left)"
timeout 240 python3 bench/pytorch_reference.py "$data" --epochs 24 --json "$out/pytorch.json" 2>&1 | tee "$out/pytorch.txt"

# As many epochs of ours as fit: 97 steps an epoch at the benchmarked rate, plus evaluation.
if [ "$best" = /tmp/train-fast ]; then ms=$(step_ms "$out/ours-fast-bench.txt"); else ms=$(step_ms "$out/ours-bench.txt"); fi
ms=${ms:-3000}
epoch_s=$(python3 -c "print($ms * 97 / 1000 * 1.2 + 3)")
remaining=$(( $(left) - 15 ))
epochs=$(python3 -c "print(max(1, min(24, int($remaining / $epoch_s))))")
peak=$(python3 -c "print($epochs * 5 / 24)")
echo "== ours: $epochs epochs (peak at $peak) at ~${epoch_s}s an epoch ($(left)s left)"
timeout $(( $(left) > 30 ? $(left) : 30 )) "$best" --data "$data" --backend "$backend" --epochs "$epochs" \
  --peak-epoch "$peak" --gpu-memory --max-minutes "$(python3 -c "print($remaining / 60)")" \
  --out "$out/ours" 2>&1 | tee "$out/ours.txt"
rm -f "$out/ours/resnet9.bpk" "$out/ours/resnet9.safetensors"
echo "== done in $(( $(date +%s) - start ))s"
