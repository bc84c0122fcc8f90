#!/usr/bin/env bash
# The peers table of `make bench`: what users run instead of bitsearch, measured beside
# bitsearch's own plans by the same `bitsearch eval` on held-out items. Peers are ONNX Runtime's
# own quantizers (scripts/peers.py): MatMulNBits weights (RTN, HQQ, GPTQ) and quantize_static's
# QDQ models (W8A8, W4A8, W4A16). Beside them: bitsearch's uniform W4 and W8 plans, and for each
# peer the ILP plan of a W2/W3/W4/W8 table under `--budget memory=` the peer's layer bytes.
#
#   scripts/bench-peers.sh BIN TERRAIN_MODEL SHAPES_FOLDER OUT_DIR PYTHON
#
# PYTHON is the interpreter with ONNX Runtime's Python package (`make peers` makes one).
set -euo pipefail
BIN=$1
TERRAIN=$2
SHAPES=$3
OUT=$4
PY=$5
W="$OUT/peers"
T="$W/terrain"
S="$W/shapes"
mkdir -p "$T" "$S"

# Peers of MODEL into DIR/peers, then bitsearch's uniform W4/W8 plans and its ILP plan at each
# peer's layer bytes, all quantized: MODEL DIR TABLE. Fills `candidates` (peers first) and writes
# DIR/pairs.tsv: per peer its layer bytes and the bitsearch plan measured at them. Plans whose
# weights come out the same (budgets above what the table's widths can fill) are measured once.
# "4.05 bits, 5.40 MB of 41.86 MB": a plan's mean bits (as its eval row names it), its layer
# bytes and those of full precision.
plan_summary() {
    awk '/^summary:/ { s = 1 } s && /^  avg_bits:/ { b = $2 } s && /^  bytes:/ { m = $2 }
        s && /^  float_bytes:/ { f = $2 } END { printf "%.2f bits, %.2f MB of %.2f MB", b, m / 1e6, f / 1e6 }' "$1"
}

candidates=()
peers_and_plans() {
    local model=$1 dir=$2 table=$3
    # Made once, like the sensitivity tables: delete DIR/peers to make them again.
    [[ -f $dir/peers/peers.tsv ]] || "$PY" scripts/peers.py "$model" "$dir/peers"
    local plans=()
    for bits in 4 8; do
        "$BIN" solve --sensitivity "$table" --uniform "$bits" --out "$dir/uniform-$bits.yaml" -q
        "$BIN" quantize "$model" --plan "$dir/uniform-$bits.yaml" --out "$dir/q-uniform-$bits" --overwrite -q
        plans+=("$dir/q-uniform-$bits")
    done
    declare -A by_weights=()
    printf 'peer\tlayer_bytes\tquantized_share\tbitsearch\n' > "$dir/pairs.tsv"
    while read -r name path share bytes; do
        candidates+=("$path")
        # The peers quantize every layer; bitsearch keeps the input, output and embedding layers in
        # float unless that alone takes more than the peer's bytes, and then protects nothing.
        local protected=""
        if ! "$BIN" solve --sensitivity "$table" --budget "memory=${bytes}B" --out "$dir/ilp-$name.yaml" -q \
            2> "$dir/ilp-$name.err"; then
            protected=", nothing kept in float"
            if ! "$BIN" solve --sensitivity "$table" --budget "memory=${bytes}B" --protect '' \
                --out "$dir/ilp-$name.yaml" -q 2> "$dir/ilp-$name.err"; then
                printf '%s\t%s\t%s\t%s\n' "$name" "$bytes" "$share" "none: $(tail -n 1 "$dir/ilp-$name.err")" \
                    >> "$dir/pairs.tsv"
                continue
            fi
        fi
        "$BIN" quantize "$model" --plan "$dir/ilp-$name.yaml" --out "$dir/q-ilp-$name" --overwrite -q
        local weights="$dir/q-ilp-$name/weights.bin"
        [[ -f $weights ]] || weights="$dir/q-ilp-$name/unet/weights.bin"
        weights=$(sha256sum < "$weights")
        if [[ -z ${by_weights[$weights]:-} ]]; then
            by_weights[$weights]="ILP $(plan_summary "$dir/ilp-$name.yaml")$protected"
            plans+=("$dir/q-ilp-$name")
        fi
        printf '%s\t%s\t%s\t%s\n' "$name" "$bytes" "$share" "${by_weights[$weights]}" >> "$dir/pairs.tsv"
    done < <(awk -F'\t' 'NR > 1 && $2 != "" { print $1, $2, $3, $4 }' "$dir/peers/peers.tsv")
    candidates+=("${plans[@]}")
}

# --- terrain: one consistency step, seeds 1000-1003 held out ----------------------------------
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 2,3,4,8 --out "$T/s2348.parquet" --resume
peers_and_plans "$TERRAIN" "$T" "$T/s2348.parquet"
"$BIN" eval "$TERRAIN" "${candidates[@]}" --sensitivity "$T/s2348.parquet" --batch 4 \
    --out "$T/eval.parquet" --markdown "$T/eval.md"

# --- shapes-t2i: DDIM 10 steps, guidance 4, its held-out prompts × seeds 1000-1001 -------------
mapfile -t prompts < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${prompts[@]}"; do prompt_args+=(--prompt "$p"); done
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --steps 10 --guidance 4 --w-bits 2,3,4,8 \
    --out "$S/s2348.parquet" --resume
candidates=()
peers_and_plans "$SHAPES" "$S" "$S/s2348.parquet"
"$BIN" eval "$SHAPES" "${candidates[@]}" --sensitivity "$S/s2348.parquet" --num-seeds 2 --batch 16 --repeats 1 \
    --out "$S/eval.parquet" --markdown "$S/eval.md"

# Which peers could not be made, and why.
failures() {
    awk -F'\t' 'NR > 1 && $2 == "" { printf "- %s: %s\n", $1, $6 }' "$1/peers/peers.tsv"
}

{
    echo "# Peers: ONNX Runtime's quantizers beside bitsearch's plans"
    echo
    echo "Every number is measured by \`bitsearch eval\` on ONNX Runtime's CPU provider. Peers are named"
    echo "\`ort-*\`; \`uniform\` and \`ilp\` rows are bitsearch's. Each peer's bitsearch plan at equal layer bytes:"
    for dir in "$T" "$S"; do
        echo
        echo "## $(basename "$dir")"
        echo
        for bits in 4 8; do
            echo "- bitsearch uniform W$bits: $(plan_summary "$dir/uniform-$bits.yaml") (full precision)"
        done
        echo
        echo "| peer | layer bytes | share of layer bytes it quantizes | bitsearch plan at these bytes |"
        echo "|---|---:|---:|---|"
        awk -F'\t' 'NR > 1 { printf "| %s | %d | %.1f%% | %s |\n", $1, $2, 100 * $3, $4 }' "$dir/pairs.tsv"
        echo
        missing=$(failures "$dir")
        [[ -z $missing ]] || printf 'Not made:\n\n%s\n\n' "$missing"
        cat "$dir/eval.md"
    done
} > "$OUT/peers.md"
echo "peers table: $OUT/peers.md"
