#!/usr/bin/env bash
# Run one genolens study as a Slurm job array, then merge the parts into one run folder.
#
#   sbatch --array=0-7 scripts/slurm/experiment-array.sh attention-entropy --split all
#
# Each array task runs part $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT of the sequences
# (`--shard i/n`) and writes reports/<study>/<run-id>/<table>/part-<i>-of-<n>.parquet; all tasks
# share the run id (the array's job id, or $GENOLENS_RUN_ID). Afterwards merge once, e.g. with a
# dependent job:
#
#   jid=$(sbatch --parsable --array=0-7 scripts/slurm/experiment-array.sh attention-entropy)
#   sbatch --dependency=afterok:$jid --wrap "genolens merge reports/attention-entropy/$jid"
#
# `genolens merge` refuses to merge until every part has finished, and names the missing ones.
# Same seed, same inputs: the merged tables equal an unsharded run's, row for row.
#
# Settings (environment): GENOLENS (the binary; default target/release/genolens if built, else
# genolens on PATH), GENOLENS_REPORTS (output root, default reports), GENOLENS_RUN_ID.
# Edit the #SBATCH lines for your cluster (partition, account, time, memory).
#
#SBATCH --job-name=genolens
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --output=slurm-%A_%a.out

set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: sbatch --array=0-(n-1) $0 <study> [experiment options...]" >&2
    exit 2
fi
if [[ -z "${SLURM_ARRAY_TASK_ID:-}" || -z "${SLURM_ARRAY_TASK_COUNT:-}" ]]; then
    echo "$0: not running as a Slurm array task (submit with sbatch --array=0-(n-1))" >&2
    exit 2
fi
study=$1
shift

if [[ -n "${GENOLENS:-}" ]]; then
    genolens=$GENOLENS
elif [[ -x target/release/genolens ]]; then
    genolens=target/release/genolens
else
    genolens=genolens
fi
run_id=${GENOLENS_RUN_ID:-${SLURM_ARRAY_JOB_ID}}
threads=${SLURM_CPUS_PER_TASK:-1}

echo "genolens task ${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT} of run ${run_id} on $(hostname)"
RAYON_NUM_THREADS=$threads exec "$genolens" experiment "$study" \
    --reports "${GENOLENS_REPORTS:-reports}" \
    --run-id "$run_id" \
    --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" \
    "$@"
