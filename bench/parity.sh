#!/usr/bin/env bash
# The quiet proxy of the learning-parity comparison: the same CPU-sized recipe trained by
# PyTorch (bench/pytorch_reference.py --device cpu) and by ours (train --backend flex) on the
# same CIFAR-10 files, several seeds each, then one table (bench/parity_table.py): final test
# accuracy per seed, mean, standard deviation, and whether our mean is within
# max(0.5, 2 standard errors) points of PyTorch's.
#
#   bench/parity.sh                     # both, seeds 0-4, the settings below
#   WHO=pytorch SEEDS="0 1 2 3 4" WIDTH=0.125 EPOCHS=4 MAX_LR=0.1 bench/parity.sh
#   RECIPE=fast MAX_LR=0.4 ... bench/parity.sh     # the `fast` preset's tricks, both sides
#
# Runs one training at a time (2 cores here); each run's JSON lands in $OUT, so an interrupted
# comparison resumes where it stopped. Never run it in CI: it takes hours on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
WHO=${WHO:-both}
SEEDS=${SEEDS:-0 1 2 3 4}
WIDTH=${WIDTH:-0.125}
EPOCHS=${EPOCHS:-4}
MAX_LR=${MAX_LR:-0.1}
BATCH=${BATCH:-512}
SUBSET=${SUBSET:-}          # train on the first N images only (blank: all 50,000)
RECIPE=${RECIPE:-seed}      # seed or fast (its tricks; epochs, LR and peak still come from here)
PEAK=$(python3 -c "print($EPOCHS * 5 / 24)")   # the recipe's proportion: peak at 5 of 24 epochs
tarball=${CIFAR10_TARBALL:-$(../shared/cifar10/build.sh | tail -n 1)}
data=$(dirname "$tarball")/cifar-10-batches-bin
tag="w${WIDTH}-e${EPOCHS}-lr${MAX_LR}-b${BATCH}${SUBSET:+-n$SUBSET}"
[ "$RECIPE" != seed ] && tag="$tag-$RECIPE"
subset_args=()
[ -n "$SUBSET" ] && subset_args=(--train-subset "$SUBSET")
OUT=${OUT:-bench/results/parity}
mkdir -p "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cifar10-webgpu/target}
for seed in $SEEDS; do
  if [ "$WHO" != ours ] && [ ! -s "$OUT/pytorch-$tag-s$seed.json" ]; then
    echo "[parity] PyTorch $tag seed $seed"
    python3 bench/pytorch_reference.py "$data" --device cpu --threads "${THREADS:-2}" --width "$WIDTH" \
      --epochs "$EPOCHS" --batch "$BATCH" --max-lr "$MAX_LR" --peak-epoch "$PEAK" --seed "$seed" \
      "${subset_args[@]}" --recipe "$RECIPE" --json "$OUT/pytorch-$tag-s$seed.json.tmp"
    mv "$OUT/pytorch-$tag-s$seed.json.tmp" "$OUT/pytorch-$tag-s$seed.json"
  fi
  if [ "$WHO" != pytorch ] && [ ! -s "$OUT/ours-$tag-s$seed.json" ]; then
    echo "[parity] ours $tag seed $seed"
    run_dir=$(mktemp -d)
    # TRAIN_BIN: a binary built beforehand, so editing the sources mid-comparison changes nothing.
    ${TRAIN_BIN:-cargo run --release --quiet --bin train --} --data "$data" --backend flex --width "$WIDTH" \
      --epochs "$EPOCHS" --batch "$BATCH" --max-lr "$MAX_LR" --peak-epoch "$PEAK" --seed "$seed" "${subset_args[@]}" --recipe "$RECIPE" --out "$run_dir"
    mv "$run_dir/metrics.json" "$OUT/ours-$tag-s$seed.json"
    rm -rf "$run_dir"
  fi
done
python3 bench/parity_table.py "$OUT" "$tag"
