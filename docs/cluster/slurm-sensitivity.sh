#!/bin/bash
# A bitsearch sensitivity run as a Slurm job array: one GPU per array task, each task computing
# every N-th window of the probe list (`--shard auto` reads SLURM_ARRAY_TASK_ID and the array's
# size), then one merge. Submit from the folder that should hold the tables:
#
#   MODEL=/models/unet.onnx sbatch --array=0-7 docs/cluster/slurm-sensitivity.sh [sensitivity flags]
#   sbatch --dependency=afterok:<job id> --wrap 'bitsearch merge tables/shard-*.parquet --out table.parquet'
#
# A task that is requeued (preempted, node failure) resumes from its journal.
#SBATCH --job-name=bitsearch-sensitivity
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=08:00:00
#SBATCH --requeue
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

model=${MODEL:?set MODEL to the ONNX denoiser file or diffusers folder}
tables=${TABLES:-tables}
mkdir -p "$tables"
exec bitsearch sensitivity "$model" \
    --device "${DEVICE:-cuda}" \
    --shard auto \
    --resume \
    --out "$tables/shard-${SLURM_ARRAY_TASK_ID:?not a Slurm array task}.parquet" \
    "$@"
