#!/usr/bin/env bash
# `make client-check`: shapes-t2i's folder and a quantized folder made from it, each generated
# on the held-out prompts by diffusers' and optimum's own pipelines (loading the folder as it
# is) and scored by the committed classifier (`bitsearch align --images`), beside bitsearch's own
# numbers on the same prompts and step count. Fails when a client's whole-caption accuracy is
# more than 0.03 from bitsearch's. The quantized folder's plan comes from a sensitivity table on
# the calibration prompts, none of them held out.
#
#   scripts/client-check.sh BIN SHAPES_FOLDER CLIENT_PYTHON OUT_DIR
set -euo pipefail
BIN=$1
SHAPES=$2
PY=$3
OUT=$4
STEPS=20
GUIDANCE=4
SEEDS=4
BITS=5
HERE=$(dirname "$0")
PROMPTS="$SHAPES/heldout_prompts.txt"
mkdir -p "$OUT"

# One step group: the clients run one UNet model at every step.
mapfile -t calibration < "$SHAPES/calibration_prompts.txt"
prompt_args=()
for p in "${calibration[@]}"; do prompt_args+=(--prompt "$p"); done
"$BIN" sensitivity "$SHAPES" "${prompt_args[@]}" --steps "$STEPS" --guidance "$GUIDANCE" --w-bits 4,8 \
    --out "$OUT/sensitivity.parquet" --resume
"$BIN" solve --sensitivity "$OUT/sensitivity.parquet" --budget "avg-bits=$BITS" --out "$OUT/plan.yaml" -q
"$BIN" quantize "$SHAPES" --plan "$OUT/plan.yaml" --out "$OUT/quantized" --overwrite -q
"$BIN" eval "$SHAPES" "$OUT/quantized" --num-seeds "$SEEDS" --repeats 1 --out "$OUT/eval.parquet" \
    --markdown "$OUT/eval.md"

for folder in fp quantized; do
    dir=$SHAPES
    [[ $folder == fp ]] || dir="$OUT/quantized"
    "$BIN" align "$dir" --prompts "$PROMPTS" --classifier "$SHAPES/classifier" --seeds "$SEEDS" --steps "$STEPS" \
        --guidance "$GUIDANCE" --json "$OUT/$folder-bitsearch.json"
    for client in diffusers optimum; do
        echo "$folder folder through $client"
        "$PY" "$HERE/client-generate.py" "$client" "$dir" --prompts "$PROMPTS" --seeds "$SEEDS" --steps "$STEPS" \
            --guidance "$GUIDANCE" --out "$OUT/$folder-$client.npy" 2> "$OUT/$folder-$client.log" \
            | tail -n 1 > "$OUT/$folder-$client.run.json"
        "$BIN" align "$dir" --prompts "$PROMPTS" --classifier "$SHAPES/classifier" --seeds "$SEEDS" \
            --images "$OUT/$folder-$client.npy" --json "$OUT/$folder-$client.json"
    done
done

status=0
"$PY" "$HERE/client-table.py" "$OUT" --steps "$STEPS" --guidance "$GUIDANCE" > "$OUT/table.md.partial" || status=$?
mv "$OUT/table.md.partial" "$OUT/table.md"
cat "$OUT/table.md"
exit "$status"
