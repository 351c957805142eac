#!/usr/bin/env bash
# `scripts/train-defaults.sh` within a wall-clock budget (for a GPU lent for a few minutes): times
# 100 MLM steps at the training shape, reads the steady-state step time (steps 51-100, after the
# warm-up), and gives MLM pretraining as many steps as fit in the budget less RESERVE seconds for
# the fine-tunes and conversions. The step count chosen is printed and lands in each MODEL.md's
# command line.
#
#   GENOLENS=target/cuda/release/genolens bash scripts/train-defaults-timed.sh cuda 480 [BATCH] [LR]
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cuda}
BUDGET=${2:?seconds for the whole run}
BATCH=${3:-32}
LR=${4:-1e-3}
RESERVE=${RESERVE:-75}
GENOLENS=${GENOLENS:-target/release/genolens}
START=$(date +%s)
CALIBRATION=$(mktemp -d)
GENOLENS_PROFILE=1 "$GENOLENS" --device "$DEVICE" --seed 1 train mlm --out "$CALIBRATION" \
  ${MLM_SHAPE:---layers 6 --hidden 128 --heads 4 --intermediate 512 --window 256} \
  --batch-size "$BATCH" --steps 100000 --stop-after 100 --eval-every 50 --eval-windows 16 \
  --checkpoint-every 100000 2>&1 | tr '\r' '\n' | grep "^step" | tee "$CALIBRATION/steps.log"
MS=$(grep "^step 100:" "$CALIBRATION/steps.log" | sed -E 's/.*\(([0-9.]+) ms a step.*/\1/')
rm -rf "$CALIBRATION"
LEFT=$((BUDGET - RESERVE - ($(date +%s) - START)))
STEPS=$(python3 -c "print(max(100, int($LEFT * 1000 / $MS * 0.95) // 100 * 100))")
echo "steady state ${MS} ms a step; ${LEFT} s left for MLM pretraining: ${STEPS} steps"
# One pretraining stage: the budget is for stage 1 only.
STAGE2_STEPS=${STAGE2_STEPS:-0} GENOLENS="$GENOLENS" bash scripts/train-defaults.sh "$DEVICE" "$STEPS" "$BATCH" "$LR"
