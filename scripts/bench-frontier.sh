#!/usr/bin/env bash
# The frontier table of `make bench`: does offering every layer float16, per-group scales
# (32/64/128) and E4M3 weights move the measured frontier? One sensitivity table per model holds
# all the options; the same memory sweep is solved from it twice, with every option and with
# `--without groups,half,fp8` (per-channel integer widths only), and every plan of both sweeps
# is simulated and measured by `bitsearch eval` on held-out items (seeds 1000.., shapes-t2i's
# held-out prompts). Memory budgets, because they count the group scales' bytes that mean bits
# leave out. Terrain solves on MixDQ's decoupled losses; shapes-t2i (DDIM 20, guidance 4) on
# image losses (`--loss image`), which track its final images where the decoupled ones do not.
# Both sweeps choose each budget's shrinkage by measurement (`--shrink search`, on fresh seeds of
# the sensitivity items, never the held-out ones): more options per layer are more chances for a
# layer to measure well by luck, and the search keeps the richer sweep from paying for that.
#
#   scripts/bench-frontier.sh BIN TERRAIN_MODEL SHAPES_FOLDER OUT_DIR
set -euo pipefail
BIN=$1
TERRAIN=$2
SHAPES=$3
OUT=$4
W="$OUT/frontier"
T="$W/terrain"
S="$W/shapes"
mkdir -p "$T" "$S"
OPTIONS=(--w-bits 3,4,8,16 --w-groups 32,64,128 --fp8)

# Both sweeps from TABLE into DIR/all and DIR/plain, every plan simulated and measured:
# MODEL TABLE DIR SWEEP, with the arrays solve_flags and eval_flags set by the caller.
sweep_both() {
    local model=$1 table=$2 dir=$3 sweep=$4
    rm -rf "$dir/all" "$dir/plain"
    "$BIN" solve --sensitivity "$table" --sweep "$sweep" "${solve_flags[@]}" --out "$dir/all" -q
    "$BIN" solve --sensitivity "$table" --sweep "$sweep" "${solve_flags[@]}" --without groups,half,fp8 \
        --out "$dir/plain" -q
    local plans=()
    for kind in all plain; do
        for plan in "$dir/$kind"/plan_*.yaml; do plans+=(--simulate "$plan"); done
    done
    "$BIN" eval "$model" "${plans[@]}" "${eval_flags[@]}" --repeats 1 --out "$dir/eval.parquet" \
        --markdown "$dir/eval.md"
}

"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 "${OPTIONS[@]}" --out "$T/s.parquet" --resume
# From uniform W4's bytes (3- and 4-bit codes share the int4 container) to uniform W8's.
solve_flags=(--shrink search)
eval_flags=(--batch 4)
sweep_both "$TERRAIN" "$T/s.parquet" "$T" 9MB..13.6MB:7

mapfile -t prompts < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${prompts[@]}"; do prompt_args+=(--prompt "$p"); done
# Each prompt on a seed of its own (--pairing zip): items sharing one noise draw fit the plan to it.
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --seeds 0 --pairing zip --steps 20 --guidance 4 "${OPTIONS[@]}" \
    --batch 16 --out "$S/s.parquet" --resume
# The same range for shapes-t2i.
solve_flags=(--loss image --shrink search)
eval_flags=(--num-seeds 2 --batch 16)
sweep_both "$SHAPES" "$S/s.parquet" "$S" 2.4MB..3.7MB:7

{
    echo "# The frontier with and without float16, group sizes and E4M3"
    echo
    echo "Each memory budget (weight bytes as stored) solved twice from one table: \"all\" may give"
    echo "any layer float16, per-group scales (32/64/128, their bytes counted) or E4M3; \"plain\" offers"
    echo "per-channel integer widths only (\`--without groups,half,fp8\`). Plans simulated in float and"
    echo "measured by \`bitsearch eval\` on held-out items; size is the plan's stored weights."
    for pair in "Terrain UNet (one step; decoupled losses):$T" \
        "shapes-t2i (DDIM 20 steps, guidance 4; image losses):$S"; do
        echo
        echo "## ${pair%%:*}"
        echo
        python3 scripts/frontier-table.py "${pair#*:}"
    done
} > "$OUT/frontier.md"
echo "frontier table: $OUT/frontier.md"
