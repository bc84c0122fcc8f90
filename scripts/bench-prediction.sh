#!/usr/bin/env bash
# The prediction table of `make bench`: does a fit of how single-layer losses combine predict what
# plans measure? Per model, `solve --fit-prediction` measures the plans of 8 budgets on the
# selection items (the sensitivity items on fresh seeds, never the held-out ones) and fits the
# measured dB against the additive dB; a sweep of 7 other budgets is then solved without and with
# the fit (the same plans: a monotone map of one metric group's sum moves no optimum) and its
# plans simulated and measured by `bitsearch eval` on held-out items (seeds 1000.., shapes-t2i's
# held-out prompts). Terrain: the W2/W4/W8 table of the fidelity bench, decoupled losses, one
# item for sensitivity (seed 0). shapes-t2i: W2/W3/W4/W8, DDIM 20, guidance 4, image losses,
# the 16 calibration prompts each on a seed of its own (as in the frontier bench).
#
#   scripts/bench-prediction.sh BIN TERRAIN_MODEL SHAPES_FOLDER OUT_DIR
set -euo pipefail
BIN=$1
TERRAIN=$2
SHAPES=$3
OUT=$4
W="$OUT/prediction"
T="$W/terrain"
S="$W/shapes"
mkdir -p "$T" "$S"
# shellcheck source=scripts/fit-and-sweep.sh
source "$(dirname "$0")/fit-and-sweep.sh"
fit_flags=()

"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 2,4,8 --out "$T/s.parquet" --resume
solve_flags=()
eval_flags=(--batch 4)
fit_and_sweep "$TERRAIN" "$T/s.parquet" "$T"

mapfile -t prompts < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${prompts[@]}"; do prompt_args+=(--prompt "$p"); done
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --seeds 0 --pairing zip --steps 20 --guidance 4 --w-bits 2,3,4,8 \
    --batch 16 --out "$S/s.parquet" --resume
solve_flags=(--loss image)
eval_flags=(--num-seeds 2 --batch 16)
fit_and_sweep "$SHAPES" "$S/s.parquet" "$S"

{
    echo "# Predicted against measured"
    echo
    echo "Fitted on the plans of $FIT measured on the selection items; the sweep $SWEEP measured"
    echo "by \`bitsearch eval\` on held-out items. Cells: measured dB; additive and fitted predictions"
    echo "(prediction − measurement)."
    for pair in "Terrain UNet (one step; decoupled losses):$T:SQNR PSNR" \
        "shapes-t2i (DDIM 20 steps, guidance 4; image losses):$S:PSNR"; do
        IFS=: read -r title dir metrics <<< "$pair"
        echo
        echo "## $title"
        echo
        # shellcheck disable=SC2086 # one argument per metric
        python3 scripts/prediction-table.py "$dir" $metrics
    done
} > "$OUT/prediction.md"
echo "prediction table: $OUT/prediction.md"
