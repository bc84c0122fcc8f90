#!/usr/bin/env bash
# The corrections table of `make bench`: each correction of the seed methods on and off, applied
# by `bitsearch quantize` and measured by `bitsearch eval` on held-out items (seeds 1000..,
# shapes-t2i's held-out prompts); calibration and sensitivity use the sensitivity run's items.
# Terrain: ILP plans at 3 and 4 mean bits and uniform W8, with and without bias correction, and
# the 4-bit plan solved on bias-corrected probes;
# MPQ-DM's outlier split probed at W2/W3 (per-layer gain) and ILP plans at 3 and 4 bits with and
# without the split options. shapes-t2i (DDIM 20 steps, guidance 4): ILP plans at 3 and 4 mean
# bits, plain, with PTQD, with bias correction and with the outlier-split options, evaluated at
# eta 0 and eta 1 (where PTQD also calibrates the variance); MixDQ's BOS-aware W8A8
# cross-attention K/V on and off.
#
#   scripts/bench-corrections.sh BIN TERRAIN_MODEL SHAPES_FOLDER OUT_DIR
set -euo pipefail
BIN=$1
TERRAIN=$2
SHAPES=$3
OUT=$4
W="$OUT/corrections"
T="$W/terrain"
S="$W/shapes"
mkdir -p "$T" "$S"

# Quantizes MODEL with PLAN as DIR/q-NAME (plain) and DIR/q-NAME-SUFFIX for each "SUFFIX:FLAG"
# given; appends the folders to the array `applied`.
applied=()
with_and_without() {
    local model=$1 dir=$2 name=$3
    shift 3
    "$BIN" quantize "$model" --plan "$dir/$name.yaml" --out "$dir/q-$name" --overwrite -q
    applied+=("$dir/q-$name")
    for variant in "$@"; do
        "$BIN" quantize "$model" --plan "$dir/$name.yaml" --out "$dir/q-$name-${variant%%:*}" "${variant#*:}" \
            --overwrite -q
        applied+=("$dir/q-$name-${variant%%:*}")
    done
}

# --- terrain: bias correction ------------------------------------------------------------------
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 2,4,8 --out "$T/s248.parquet" --resume
for bits in 3 4; do
    "$BIN" solve --sensitivity "$T/s248.parquet" --budget "avg-bits=$bits" --out "$T/ilp-$bits.yaml" -q
    with_and_without "$TERRAIN" "$T" "ilp-$bits" bc:--bias-correction
done
"$BIN" solve --sensitivity "$T/s248.parquet" --uniform 8 --out "$T/uniform-8.yaml" -q
with_and_without "$TERRAIN" "$T" uniform-8 bc:--bias-correction
# The same plan solved on bias-corrected probes, applied with bias correction.
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 2,4,8 --bias-correction \
    --out "$T/s248-bc.parquet" --resume
"$BIN" solve --sensitivity "$T/s248-bc.parquet" --budget avg-bits=4 --out "$T/ilp-bc-probes-4.yaml" -q
"$BIN" quantize "$TERRAIN" --plan "$T/ilp-bc-probes-4.yaml" --out "$T/q-ilp-bc-probes-4" --bias-correction \
    --overwrite -q
applied+=("$T/q-ilp-bc-probes-4")
"$BIN" eval "$TERRAIN" "${applied[@]}" --batch 4 --repeats 1 --out "$T/eval.parquet" --markdown "$T/eval.md"

# --- terrain: outlier split -----------------------------------------------------------------------
"$BIN" sensitivity "$TERRAIN" --condition difficulty=0.5 --w-bits 2,3,4,8 --outlier-split \
    --out "$T/split.parquet" --resume | tee "$T/split-sensitivity.txt"
applied=()
for bits in 3 4; do
    "$BIN" solve --sensitivity "$T/split.parquet" --budget "avg-bits=$bits" --out "$T/ilp-split-$bits.yaml" \
        | tee "$T/ilp-split-$bits.txt"
    "$BIN" solve --sensitivity "$T/split.parquet" --budget "avg-bits=$bits" --without split \
        --out "$T/ilp-nosplit-$bits.yaml" -q
    for kind in split nosplit; do
        "$BIN" quantize "$TERRAIN" --plan "$T/ilp-$kind-$bits.yaml" --out "$T/q-ilp-$kind-$bits" --overwrite -q
        applied+=("$T/q-ilp-$kind-$bits")
    done
done
"$BIN" eval "$TERRAIN" "${applied[@]}" --batch 4 --repeats 1 --out "$T/eval-split.parquet" \
    --markdown "$T/eval-split.md"

# --- shapes-t2i: PTQD and bias correction ----------------------------------------------------------
mapfile -t prompts < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${prompts[@]}"; do prompt_args+=(--prompt "$p"); done
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --steps 20 --guidance 4 --w-bits 2,3,4,8 --outlier-split \
    --out "$S/s20.parquet" --resume | tee "$S/s20-sensitivity.txt"
applied=()
for bits in 3 4; do
    "$BIN" solve --sensitivity "$S/s20.parquet" --budget "avg-bits=$bits" --without split \
        --out "$S/ilp-$bits.yaml" -q
    with_and_without "$SHAPES" "$S" "ilp-$bits" ptqd:--ptqd bc:--bias-correction
    "$BIN" solve --sensitivity "$S/s20.parquet" --budget "avg-bits=$bits" --out "$S/ilp-split-$bits.yaml" \
        | tee "$S/ilp-split-$bits.txt"
    "$BIN" quantize "$SHAPES" --plan "$S/ilp-split-$bits.yaml" --out "$S/q-ilp-split-$bits" --overwrite -q
    applied+=("$S/q-ilp-split-$bits")
done
for eta in 0 1; do
    "$BIN" eval "$SHAPES" "${applied[@]}" --eta "$eta" --num-seeds 2 --batch 16 --repeats 1 \
        --out "$S/eval-eta$eta.parquet" --markdown "$S/eval-eta$eta.md"
done

# --- shapes-t2i: BOS-aware W8A8 cross-attention K/V -------------------------------------------
for kind in bos plain; do
    flag=()
    [[ $kind == plain ]] && flag=(--no-bos-aware)
    "$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --steps 10 --guidance 4 --w-bits 8 --act-bits 8 \
        --layers cross_attn_k,cross_attn_v "${flag[@]}" --out "$S/kv-$kind.parquet" --resume
done
"$BIN" solve --sensitivity "$S/kv-bos.parquet" --uniform 8 --protect "" --out "$S/kv-w8a8.yaml" -q
"$BIN" quantize "$SHAPES" --plan "$S/kv-w8a8.yaml" --out "$S/q-kv-bos" --overwrite -q
"$BIN" quantize "$SHAPES" --plan "$S/kv-w8a8.yaml" --out "$S/q-kv-plain" --no-bos-aware --overwrite -q
"$BIN" eval "$SHAPES" "$S/q-kv-bos" "$S/q-kv-plain" --num-seeds 2 --batch 16 --repeats 1 \
    --out "$S/eval-bos.parquet" --markdown "$S/eval-bos.md"

# The split lines of a sensitivity run's output, then how many layers each ILP-split-BITS plan
# splits: SENSITIVITY_TXT PLAN_PREFIX (the solve outputs are PLAN_PREFIX-BITS.txt).
split_summary() {
    grep "outlier split" "$1" | sed 's/^/- /'
    for bits in 3 4; do
        echo "- ILP $bits bits: $(grep -h "outlier split" "$2-$bits.txt" || echo "no layer takes the split")"
    done
}

{
    echo "# Corrections on and off"
    echo
    echo "Measured by \`bitsearch eval\` on held-out items on ONNX Runtime's CPU provider; \"pred.\" is the"
    echo "plan's additive prediction (single-layer probes without any correction)."
    echo
    echo "## Terrain UNet: bias correction (ILP plans from a W2/W4/W8 table, uniform W8)"
    echo
    cat "$T/eval.md"
    echo
    echo "## Terrain UNet: MPQ-DM outlier split (W2/W3/W4/W8 table with split options at W2 and W3)"
    echo
    split_summary "$T/split-sensitivity.txt" "$T/ilp-split"
    echo
    echo "ILP plans with the split options (\"split\") and without them (\"nosplit\"), same table:"
    echo
    cat "$T/eval-split.md"
    echo
    echo "## shapes-t2i: outlier split (W2/W3/W4/W8 table with split options at W2 and W3, 20 steps)"
    echo
    split_summary "$S/s20-sensitivity.txt" "$S/ilp-split"
    for eta in 0 1; do
        echo
        echo "## shapes-t2i, DDIM 20 steps, guidance 4, eta $eta: PTQD, bias correction, outlier split"
        echo
        cat "$S/eval-eta$eta.md"
    done
    echo
    echo "## shapes-t2i, DDIM 10 steps: W8A8 cross-attention K/V with and without the BOS row in float"
    echo
    cat "$S/eval-bos.md"
    echo
    echo "## PTQD fits (shapes-t2i, ILP 4 bits): per step k (as fitted), residual σ, rms error before"
    echo
    echo "| step | t | k fitted | k used | σ residual | rms error |"
    echo "|---:|---:|---:|---:|---:|---:|"
    awk '/timestep:/ {t=$NF} /k_fitted:/ {kf=$NF} /^  k:/ {k=$NF} /^  sigma:/ {s=$NF}
         /rms_error:/ {printf "| %d | %s | %.4f | %.4f | %.4f | %.4f |\n", n++, t, kf, k, s, $NF}' \
        "$S/q-ilp-4-ptqd/unet/noise_correction.yaml"
} > "$OUT/corrections.md"
echo "corrections table: $OUT/corrections.md"
