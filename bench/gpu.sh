#!/usr/bin/env bash
# The whole GPU measurement in one call of at most ~9.5 minutes, on the lent GPU machine.
#
# Prepared here by bench/prepare.sh, which fills the git-ignored .bench/ with the native `train`
# binary (gzipped) (built with --features wgpu), the data pack and its unpacker, and .gl/ with the Vulkan
# loader. On the device:  bash bench/gpu.sh   (results under $OUT, or /tmp/bench-out)
#
# 1. our step benchmark (ms/step, images/s) on wgpu/Vulkan;
# 2. the PyTorch reference of the same recipe, 24 epochs, fp32 with TF32 off;
# 3. our full recipe for as many epochs as fit in the remaining time (24 if they do), with the
#    GPU memory in use after each epoch.
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

gunzip -c .bench/train.gz > /tmp/train && chmod +x /tmp/train
python3 .bench/unpack.py .bench/cifar10-jpeg.pack /tmp/cifar10 > /dev/null
data=/tmp/cifar10/cifar-10-batches-bin
ls -la "$data"

echo "== ours: step benchmark ($(left)s left)"
timeout 150 /tmp/train --data "$data" --backend vulkan --bench 30 2>&1 | tee "$out/ours-bench.txt"

echo "== pytorch: 24 epochs ($(left)s left)"
timeout 260 python3 bench/pytorch_reference.py "$data" --epochs 24 --json "$out/pytorch.json" 2>&1 | tee "$out/pytorch.txt"

# As many epochs of ours as fit: 97 steps an epoch at the benchmarked rate, plus evaluation.
ms=$(grep -o '[0-9.]* ms/step' "$out/ours-bench.txt" | head -1 | cut -d' ' -f1)
ms=${ms:-2000}
epoch_s=$(python3 -c "print($ms * 97 / 1000 * 1.25 + 3)")
remaining=$(( $(left) - 20 ))
epochs=$(python3 -c "print(max(1, min(24, int($remaining / $epoch_s))))")
peak=$(python3 -c "print($epochs * 5 / 24)")
echo "== ours: $epochs epochs (peak at $peak) at ~${epoch_s}s an epoch ($(left)s left)"
timeout $(( $(left) > 30 ? $(left) : 30 )) /tmp/train --data "$data" --backend vulkan --epochs "$epochs" \
  --peak-epoch "$peak" --gpu-memory --max-minutes "$(python3 -c "print(($remaining) / 60)")" --out "$out/ours" 2>&1 | tee "$out/ours.txt"
rm -f "$out/ours/resnet9.bpk" "$out/ours/resnet9.safetensors"
echo "== done in $(( $(date +%s) - start ))s"
