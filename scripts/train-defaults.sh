#!/usr/bin/env bash
# `just train-defaults`: trains the committed default models from `just data` output with fixed
# seeds, then stores them as f16 under data/models/ (each MODEL.md states the measured f32 → f16
# difference). The f32 originals and the resumable checkpoints stay in the git-ignored WORK folder.
#
#   bash scripts/train-defaults.sh [DEVICE] [MLM_STEPS] [MLM_BATCH] [MLM_LR]
#
# DEVICE is cpu (default) or cuda (a binary built with `just build-cuda`); GENOLENS names the
# binary (default target/release/genolens). The defaults are the settings of the committed models
# (trained on this project's 2-core CPU in about 1.5 hours); each MODEL.md records its exact
# command line in the "Training" section.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cpu}
MLM_STEPS=${2:-2400}
MLM_BATCH=${3:-32}
MLM_LR=${4:-1e-3}
# The architecture (also read by train-defaults-timed.sh): 6 layers of hidden 128, 4 heads.
MLM_SHAPE=${MLM_SHAPE:---layers 6 --hidden 128 --heads 4 --intermediate 512 --window 256}
GENOLENS=${GENOLENS:-target/release/genolens}
WORK=${WORK:-data/cache/train}
OUT=${MODELS:-data/models}
mkdir -p "$WORK" "$OUT"

echo "== MLM pretraining: $MLM_STEPS steps x $MLM_BATCH windows of 256 bp on $DEVICE"
"$GENOLENS" --device "$DEVICE" --seed 1 train mlm --out "$WORK/mini-dnabert6" \
  $MLM_SHAPE --init kmer --batch-size "$MLM_BATCH" --steps "$MLM_STEPS" --lr "$MLM_LR" \
  --warmup 0.05 --eval-every 300 --checkpoint-every 300
rm -rf "$OUT/mini-dnabert6"
"$GENOLENS" convert --model "$WORK/mini-dnabert6" --out "$OUT/mini-dnabert6" --dtype f16

for task in promoters:human-promoters:2 tf:tf-oct4-mafk:3; do
  IFS=: read -r name dataset seed <<<"$task"
  echo "== fine-tuning mini-dnabert6-$name on $dataset"
  "$GENOLENS" --device "$DEVICE" --seed "$seed" train classify --data "data/$dataset.parquet" \
    --init "$WORK/mini-dnabert6" --out "$WORK/mini-dnabert6-$name" --epochs 5 --batch-size 48 --lr 2e-4
  rm -rf "$OUT/mini-dnabert6-$name"
  "$GENOLENS" convert --model "$WORK/mini-dnabert6-$name" --out "$OUT/mini-dnabert6-$name" \
    --dtype f16 --check-data "data/$dataset.parquet"
done
du -sh "$OUT"/*
