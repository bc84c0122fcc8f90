#!/usr/bin/env bash
# The GPTQ and low-rank table of `make bench`: plans at 3 and 4 mean bits solved with GPTQ
# rounding and a rank-8 float16 branch among the table's options (`all`), without the branch
# (`--without rank`), without either (`--without gptq,rank`), beside uniform plans, applied as
# low-bit models and measured by `bitsearch eval` on held-out items (seeds 1000.., shapes-t2i's
# held-out prompts), never on the sensitivity items. Also keeps each sensitivity run's phase
# table, where GPTQ's share of the run is printed, and checks a prediction fitted on each
# table against a sweep measured held out (scripts/fit-and-sweep.sh).
#
#   scripts/bench-gptq.sh BIN TERRAIN_MODEL SHAPES_FOLDER OUT_DIR
set -euo pipefail
BIN=$1
TERRAIN=$2
SHAPES=$3
OUT=$4
W="$OUT/gptq"
T="$W/terrain"
S="$W/shapes"
mkdir -p "$T" "$S"

# shellcheck source=scripts/fit-and-sweep.sh
source "$(dirname "$0")/fit-and-sweep.sh"

# Plans from TABLE into DIR, each applied to MODEL; the quantized folders into `applied`. The
# caller sets the array solve_flags.
applied=()
plans() {
    local model=$1 dir=$2 table=$3
    applied=()
    for bits in 3 4; do
        "$BIN" solve --sensitivity "$table" "${solve_flags[@]}" --budget "avg-bits=$bits" --out "$dir/all-$bits.yaml" -q
        "$BIN" solve --sensitivity "$table" "${solve_flags[@]}" --budget "avg-bits=$bits" --without rank \
            --out "$dir/gptq-$bits.yaml" -q
        "$BIN" solve --sensitivity "$table" "${solve_flags[@]}" --budget "avg-bits=$bits" --without gptq,rank \
            --out "$dir/nearest-$bits.yaml" -q
        "$BIN" solve --sensitivity "$table" "${solve_flags[@]}" --uniform "$bits" --out "$dir/uniform-$bits.yaml" -q
        for kind in all gptq nearest uniform; do
            "$BIN" quantize "$model" --plan "$dir/$kind-$bits.yaml" --out "$dir/q-$kind-$bits" --overwrite -q
            applied+=("$dir/q-$kind-$bits")
        done
    done
}

# --- terrain: four calibration seeds, one step -------------------------------------------------
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --seeds 0,1,2,3 --w-bits 2,3,4,8 \
    --rounding nearest,gptq --ranks 8 --out "$T/s.parquet" --resume | tee "$T/sensitivity.log"
solve_flags=()
plans "$TERRAIN" "$T" "$T/s.parquet"
"$BIN" eval "$TERRAIN" "${applied[@]}" --sensitivity "$T/s.parquet" --batch 4 --repeats 1 \
    --out "$T/eval.parquet" --markdown "$T/eval.md"
mkdir -p "$T/prediction"
# Seeds on each side (64 unless TERRAIN_PREDICTION_SEEDS says): at low bits a few items dominate
# the pooled SQNR, and two sets of 16 seeds disagree by several dB.
seeds=${TERRAIN_PREDICTION_SEEDS:-64}
fit_flags=(--calibration-seeds "$(seq -s, 4 $((seeds + 3)))")
eval_flags=(--batch 4 --num-seeds "$seeds")
fit_and_sweep "$TERRAIN" "$T/s.parquet" "$T/prediction"

# --- shapes-t2i: the calibration prompts each on a seed of its own, DDIM 20, guidance 4, image
# losses (the frontier bench's settings) ---------------------------------------------------
mapfile -t prompts < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${prompts[@]}"; do prompt_args+=(--prompt "$p"); done
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --seeds 0 --pairing zip --steps 20 --guidance 4 \
    --w-bits 2,3,4,8 --rounding nearest,gptq --ranks 8 --batch 16 --out "$S/s.parquet" --resume |
    tee "$S/sensitivity.log"
solve_flags=(--loss image)
plans "$SHAPES" "$S" "$S/s.parquet"
"$BIN" eval "$SHAPES" "${applied[@]}" --sensitivity "$S/s.parquet" --num-seeds 8 --batch 16 --repeats 1 \
    --out "$S/eval.parquet" --markdown "$S/eval.md"
# The fit measures on prompts drawn as the held-out ones are (none of them held out): the
# calibration prompts draw only objects training drew, and cannot show that gap.
mkdir -p "$S/prediction"
fit_flags=(--selection-prompts "$SHAPES/calibration_prompts_deploy.txt" --calibration-seeds 16)
eval_flags=(--num-seeds 8 --batch 16)
fit_and_sweep "$SHAPES" "$S/s.parquet" "$S/prediction"

{
    echo "# GPTQ rounding and a low-rank branch as per-layer options"
    echo
    echo "Every number is measured by \`bitsearch eval\` on ONNX Runtime's CPU provider on held-out items."
    echo "\`all-B\`: the ILP at B mean bits with GPTQ-rounded codes and rank-8 branches among the options;"
    echo "\`gptq-B\`: without the branches (\`--without rank\`); \`nearest-B\`: without either"
    echo "(\`--without gptq,rank\`); \`uniform-B\`: every layer at B bits, nearest."
    echo
    echo "## Terrain UNet (one step; W2/W3/W4/W8 × nearest/GPTQ × rank 0/8 table on 4 calibration seeds)"
    echo
    cat "$T/eval.md"
    echo
    grep -E "^probing time" "$T/sensitivity.log" || true
    echo
    echo "Fitted prediction ($FIT measured on the selection items; $SWEEP held out):"
    echo
    python3 scripts/prediction-table.py "$T/prediction" SQNR PSNR
    echo
    echo "## shapes-t2i (DDIM 20 steps, guidance 4; table on the 16 calibration prompts, image losses; 56 held-out prompts × 8 seeds)"
    echo
    cat "$S/eval.md"
    echo
    grep -E "^probing time" "$S/sensitivity.log" || true
    echo
    echo "Fitted prediction ($FIT measured on calibration_prompts_deploy.txt, seed 16; $SWEEP held out):"
    echo
    python3 scripts/prediction-table.py "$S/prediction" PSNR
} > "$OUT/gptq.md"
echo "wrote $OUT/gptq.md"
