#!/usr/bin/env bash
# The real-size table: each zoo folder (from `make models-large`) through inspect → sensitivity
# on a slice → solve → quantize → eval at a 32×32 latent, one step, one item, W4/W8; wall time
# and peak resident memory of every command (GNU time's maximum RSS), probe / plain forward,
# file sizes, and the full run (all layers, W4/W8, 10 steps, 8 items) extrapolated from the
# measured probe and forward times.
#
#   scripts/bench-large.sh BIN OUT FOLDER...
#
# BIN: a bitsearch release binary; OUT: results folder (OUT/table.md and the logs); FOLDER: zoo
# folders, named like `sd15-f32`. SHARDS (default 10) sets the slice: shard 0 of SHARDS. DEVICE
# (default cpu) is where every command runs: scripts/device-check.sh runs it with cuda.
set -euo pipefail

BIN=$(realpath "$1")
OUT=$(realpath -m "$2")
shift 2
SHARDS=${SHARDS:-10}
DEVICE=${DEVICE:-cpu}
mkdir -p "$OUT"
ROWS="$OUT/rows.tsv"
: > "$ROWS"

# Runs a command under GNU time; appends "model command seconds peak_kb" to the rows.
measure() {
    local model="$1" step="$2"; shift 2
    local log="$OUT/$model.$step"
    /usr/bin/time -f '%e %M' -o "$log.time" "$@" > "$log.out" 2> "$log.err" || {
        echo "bench-large: $model $step failed; see $log.err" >&2
        tail -n 3 "$log.err" >&2
        exit 1
    }
    printf '%s\t%s\t%s\n' "$model" "$step" "$(cat "$log.time")" >> "$ROWS"
}

for folder in "$@"; do
    folder=$(realpath "$folder")
    name=$(basename "$folder")
    work="$OUT/$name"
    rm -rf "$work" && mkdir -p "$work"
    # A pipeline folder draws a prompt (one UNet call a step: guidance 0, as SDXL-Turbo runs);
    # a lone denoiser reads constant conditions: every UNet and DiT of the zoo a text context,
    # SDXL's also the pooled text and the size conditions. These runs measure cost.
    if [ -f "$folder/model_index.json" ]; then
        conditions=(--prompt "a red circle on a blue square" --guidance 0)
    else
        conditions=(--prediction epsilon --condition encoder_hidden_states=0.1 --dim sequence_length=77)
        if grep -q '"text_time"' "$folder"/*/config.json; then
            conditions+=(--condition text_embeds=0.1 --condition time_ids=512)
        fi
    fi
    dims=(--dim height=32 --dim width=32)
    measure "$name" inspect "$BIN" inspect "$folder" "${dims[@]}"
    measure "$name" sensitivity "$BIN" sensitivity "$folder" --out "$work/s.parquet" --w-bits 4,8 --steps 1 \
        --device "$DEVICE" --shard "0/$SHARDS" "${dims[@]}" "${conditions[@]}"
    measure "$name" solve "$BIN" solve --sensitivity "$work/s.parquet" --allow-partial --budget avg-bits=6 \
        --out "$work/plan.yaml"
    measure "$name" quantize "$BIN" quantize "$folder" --plan "$work/plan.yaml" --out "$work/q" --device "$DEVICE"
    measure "$name" eval "$BIN" eval "$folder" "$work/q" --out "$work/eval.parquet" --seeds 1000 --repeats 1 \
        --device "$DEVICE"
    du -sb "$folder" | cut -f1 > "$work/float.bytes"
    du -sb "$work/q" | cut -f1 > "$work/quantized.bytes"
done

python3 - "$OUT" "$SHARDS" "$@" <<'EOF'
import json, os, re, sys
out, shards, folders = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "rows.tsv"))]
lines = ["| model | command | wall s | peak RSS GB | × float weights |", "|---|---|---:|---:|---:|"]
summary = ["", "| model | float weights GB | quantized folder GB | layers | probe / plain | plain forward s "
           "| full run on this device (h) |", "|---|---:|---:|---:|---:|---:|---:|"]
for folder in folders:
    name = os.path.basename(os.path.realpath(folder))
    work = os.path.join(out, name)
    data = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs if "onnx" in f)
    for model, step, times in rows:
        if model != name:
            continue
        seconds, kb = times.split()
        # GNU time reports KiB.
        lines.append(f"| {name} | {step} | {float(seconds):.1f} | {int(kb) * 1024 / 1e9:.2f} | {int(kb) * 1024 / data:.2f} |")
    report = open(os.path.join(out, f"{name}.sensitivity.out")).read()
    ratio = float(re.search(r"probe / plain forward = ([0-9.]+)", report).group(1))
    plain = float(re.search(r"plain pass ([0-9.]+) s", report).group(1))
    probes = int(re.search(r"of (\d+) in all", open(os.path.join(out, f"{name}.sensitivity.err")).read()).group(1))
    inspect = open(os.path.join(out, f"{name}.inspect.out")).read()
    layers = int(re.search(r"weight layers:\s+(\d+)", inspect).group(1))
    # Each probe: its first step at the measured probe cost, 9 more steps as plain forwards,
    # for each of 8 items (one item per batch: CPU time grows with the batch).
    full = probes * (ratio * plain + 9 * plain) * 8 / 3600
    quantized = int(open(os.path.join(work, "quantized.bytes")).read())
    summary.append(f"| {name} | {data / 1e9:.2f} | {quantized / 1e9:.2f} | {layers} | {ratio:.3f} | {plain:.2f} "
                   f"| {full:.1f} |")
with open(os.path.join(out, "table.md"), "w") as f:
    f.write("\n".join(lines + summary) + "\n")
    f.write(f"\nSensitivity on shard 0 of {shards}; 32×32 latent, 1 step, 1 item, W4/W8. "
            "Full run: every layer at W4/W8, 10 steps, 8 items, extrapolated.\n")
print(open(os.path.join(out, "table.md")).read())
EOF
