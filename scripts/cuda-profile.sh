#!/usr/bin/env bash
# Where a CUDA MLM training step's time goes, for work on the GPU path (run on a GPU machine with a
# binary from `just build-cuda`):
#   1. `genolens-bench pieces --device cuda`: each piece of a step of the mini model timed alone
#      (forward, forward + backward, synchronised);
#   2. Nsight Compute (`ncu`, where installed): per-kernel GPU time over a few training steps,
#      summed by kernel name.
#
#   GENOLENS_BENCH=... GENOLENS=... bash scripts/cuda-profile.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-reports/cuda-profile}
BENCH=${GENOLENS_BENCH:-target/cuda/release/genolens-bench}
GENOLENS=${GENOLENS:-target/cuda/release/genolens}
mkdir -p "$OUT_DIR"
nvidia-smi -L
"$BENCH" pieces --device cuda --repeats 10 | tee "$OUT_DIR/pieces.tsv"
if command -v ncu >/dev/null; then
  ncu --metrics gpu__time_duration.sum --print-summary per-kernel \
    "$GENOLENS" --device cuda --seed 1 train mlm --out /tmp/genolens-ncu --batch-size 128 \
    --steps 100 --stop-after 3 --eval-every 1000 --eval-windows 16 --checkpoint-every 1000 \
    >"$OUT_DIR/ncu-summary.txt" 2>&1
  # Kernels by total time (the summary lists each kernel's count and mean duration).
  python3 - "$OUT_DIR/ncu-summary.txt" <<'PY' | tee "$OUT_DIR/kernels-by-time.tsv"
import re, sys
text = open(sys.argv[1]).read()
rows = []
for block in re.split(r"\n(?=  \S)", text):
    name = block.strip().splitlines()[0] if block.strip() else ""
    count = re.search(r"(\d+) kernel instances", block) or re.search(r"Invocations\s*:?\s*(\d+)", block)
    mean = re.search(r"gpu__time_duration.sum\s+(\S+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)", block)
    if count and mean:
        unit = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "ns": 1e-6, "us": 1e-3, "ms": 1.0}.get(mean.group(1), 1.0)
        average = float(mean.group(3).replace(",", "")) * unit
        rows.append((average * int(count.group(1)), int(count.group(1)), average, name[:120]))
print("total ms\tcount\tmean ms\tkernel")
for total, count, average, name in sorted(rows, reverse=True)[:40]:
    print(f"{total:.2f}\t{count}\t{average:.4f}\t{name}")
PY
else
  echo "ncu not installed: only the pieces table"
fi
