#!/usr/bin/env bash
# The fidelity-and-cost table of `make bench`: plans applied as real low-bit models and measured
# by `bitsearch eval` on held-out items (seeds 1000.., shapes-t2i's held-out prompts), never on
# the sensitivity or calibration items. Terrain: ILP, greedy and uniform plans at 3–6 mean bits
# (ILP and greedy from one W2/W4/W8 table, uniform W3/W5/W6 from a second table) and a W8A8
# plan; shapes-t2i: a 2-step-group W2/W3/W4/W8 table, plans at 3 and 4 bits.
#
#   scripts/bench-fidelity.sh BIN TERRAIN_MODEL SHAPES_FOLDER OUT_DIR
set -euo pipefail
BIN=$1
TERRAIN=$2
SHAPES=$3
OUT=$4
W="$OUT/fidelity"
mkdir -p "$W/terrain" "$W/shapes"
T="$W/terrain"
S="$W/shapes"

# ILP, greedy and uniform plans at BITS mean bits, each applied: MODEL DIR TABLE UNIFORM_TABLE BITS.
# Appends the three quantized folders to the array `applied`.
applied=()
three_plans() {
    local model=$1 dir=$2 table=$3 uniform_table=$4 bits=$5
    "$BIN" solve --sensitivity "$table" --budget "avg-bits=$bits" --out "$dir/ilp-$bits.yaml" -q
    "$BIN" solve --sensitivity "$table" --budget "avg-bits=$bits" --method greedy --out "$dir/greedy-$bits.yaml" -q
    "$BIN" solve --sensitivity "$uniform_table" --uniform "$bits" --out "$dir/uniform-$bits.yaml" -q
    for kind in ilp greedy uniform; do
        "$BIN" quantize "$model" --plan "$dir/$kind-$bits.yaml" --out "$dir/q-$kind-$bits" --overwrite -q
        applied+=("$dir/q-$kind-$bits")
    done
}

# --- terrain ---------------------------------------------------------------------------------
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 2,4,8 --out "$T/s248.parquet" --resume
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 3,5,6 --out "$T/s356.parquet" --resume
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 8 --act-bits 8 --out "$T/s8a8.parquet" --resume
for bits in 3 4 5 6; do
    uniform_table="$T/s248.parquet"
    [[ $bits == 4 ]] || uniform_table="$T/s356.parquet"
    three_plans "$TERRAIN" "$T" "$T/s248.parquet" "$uniform_table" "$bits"
done
candidates=("${applied[@]}")
# W8A8 everywhere, and mixed: the eight convs whose W8A8 probe scored below 32 dB on the
# sensitivity items (terrain's output stage) kept in float.
A8_SENSITIVE=node_conv2d_194,node_conv2d_192,node_conv2d_195,node_conv2d_162,node_conv2d_27,node_conv2d_191,node_conv2d_8,node_conv2d_186
"$BIN" solve --sensitivity "$T/s8a8.parquet" --uniform 8 --out "$T/w8a8.yaml" -q
"$BIN" solve --sensitivity "$T/s8a8.parquet" --uniform 8 --protect "input,output,embedding,$A8_SENSITIVE" \
    --out "$T/w8a8-mixed.yaml" -q
"$BIN" quantize "$TERRAIN" --plan "$T/w8a8.yaml" --out "$T/q-w8a8" --calibration-seeds 0,1,2,3 --overwrite -q
"$BIN" quantize "$TERRAIN" --plan "$T/w8a8-mixed.yaml" --out "$T/q-w8a8-mixed" --calibration-seeds 0,1,2,3 \
    --overwrite -q
"$BIN" quantize "$TERRAIN" --plan "$T/ilp-4.yaml" --out "$T/q-ilp-4-unpacked" --storage unpacked --overwrite -q
candidates+=("$T/q-w8a8" "$T/q-w8a8-mixed" "$T/q-ilp-4-unpacked")
"$BIN" eval "$TERRAIN" "${candidates[@]}" --simulate "$T/ilp-4.yaml" --sensitivity "$T/s248.parquet" \
    --batch 4 --out "$T/eval.parquet" --markdown "$T/eval.md" --samples "$T/samples"

# --- shapes-t2i ------------------------------------------------------------------------------
mapfile -t prompts < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${prompts[@]}"; do prompt_args+=(--prompt "$p"); done
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --steps 10 --guidance 4 --step-groups 2 --w-bits 2,3,4,8 \
    --out "$S/s.parquet" --resume
applied=()
for bits in 3 4; do
    three_plans "$SHAPES" "$S" "$S/s.parquet" "$S/s.parquet" "$bits"
done
"$BIN" eval "$SHAPES" "${applied[@]}" --simulate "$S/ilp-4.yaml" --num-seeds 2 --batch 16 --repeats 1 \
    --out "$S/eval.parquet" --markdown "$S/eval.md"

{
    echo "# Fidelity and cost of applied plans"
    echo
    echo "Every number is measured by \`bitsearch eval\` on ONNX Runtime's CPU provider; \"pred.\" is the plan's"
    echo "additive prediction. Greedy is the marginal-loss baseline on the same table as the ILP."
    echo
    echo "## Terrain UNet (one step; ILP and greedy from a W2/W4/W8 table, uniform W3/W5/W6 from a W3/W5/W6 table)"
    echo
    cat "$T/eval.md"
    echo
    echo "## shapes-t2i (DDIM 10 steps, guidance 4, 2 step groups, W2/W3/W4/W8)"
    echo
    cat "$S/eval.md"
} > "$OUT/fidelity.md"
echo "fidelity table: $OUT/fidelity.md"
