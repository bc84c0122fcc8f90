#!/usr/bin/env bash
# The GPU checks in one call, for a machine with an NVIDIA GPU and its own ONNX Runtime but no
# package registry. Nothing is installed: the stripped release binary and the models are carried
# in; every result goes to one folder.
#
#   scripts/device-check.sh BIN OUT [TERRAIN_MODEL]
#
# With ZOO (a stripped `zoo` binary, carried like BIN), the real-size folders LARGE names
# (default sdxl-f16; the folders are far too large to carry, so they are written there, about
# a minute each) also go through scripts/bench-large.sh on the device: OUT/large/table.md.
#
# BIN: a bitsearch release binary; OUT: the results folder. ONNX Runtime is the machine's own
# (the Python package's library, or ORT_DYLIB_PATH). DEVICE=cpu runs the same checks on the CPU
# (to try the script where there is no GPU). Results: OUT/summary.md and the logs beside it.
set -euo pipefail

BIN=$(realpath "$1")
OUT=$(realpath -m "$2")
MODEL=$(realpath "${3:-models/terrain/terrain_consistency_unet_difficulty100.onnx}")
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"

if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    capi=$("$PY" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')
    ORT_DYLIB_PATH=$(ls "$capi"/libonnxruntime.so* | head -n 1)
    export ORT_DYLIB_PATH
fi
{
    echo "# bitsearch device check"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); device asked: $DEVICE"
    echo "- ONNX Runtime: $ORT_DYLIB_PATH"
    echo "- providers: $("$PY" -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())' 2>&1 || echo 'python onnxruntime not importable')"
    if command -v nvidia-smi > /dev/null; then
        echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
    fi
    echo
} > "$SUMMARY"

# Peak GPU memory while a command runs (nvidia-smi sampled every 100 ms), in MiB.
peak_gpu() {
    local log="$1"; shift
    local sampler=""
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$log.gpu" &
        sampler=$!
    fi
    "$@" > "$log" 2>&1
    local status=$?
    if [[ -n "$sampler" ]]; then
        kill "$sampler" 2> /dev/null || true
        wait "$sampler" 2> /dev/null || true
        echo "peak GPU memory: $(sort -n "$log.gpu" | tail -n 1) MiB" >> "$log"
    fi
    return $status
}

W="$OUT/work"
mkdir -p "$W"
# 1. Sensitivity probes per second (the attention projections at W4/W8: 56 probes).
peak_gpu "$OUT/sensitivity.log" "$BIN" sensitivity "$MODEL" --condition difficulty=0.5 --w-bits 4,8 \
    --layers attn_qkv --device "$DEVICE" --out "$W/s.parquet" --overwrite
# 2. Plans from it and their quantized models (both storage modes).
"$BIN" solve --sensitivity "$W/s.parquet" --budget avg-bits=6 --out "$W/plan.yaml" > "$OUT/solve.log" 2>&1
"$BIN" quantize "$MODEL" --plan "$W/plan.yaml" --out "$W/q-lowbit" --overwrite --device "$DEVICE" > "$OUT/quantize.log" 2>&1
"$BIN" quantize "$MODEL" --plan "$W/plan.yaml" --out "$W/q-unpacked" --storage unpacked --overwrite \
    --device "$DEVICE" >> "$OUT/quantize.log" 2>&1
# 3. Latency, memory and fidelity of FP32 and the quantized models on the device.
peak_gpu "$OUT/eval.log" "$BIN" eval "$MODEL" "$W/q-lowbit" "$W/q-unpacked" --device "$DEVICE" \
    --out "$OUT/eval.parquet" --markdown "$OUT/eval.md" --num-seeds 8 --batch 8 --repeats 5

{
    echo "## Sensitivity"
    grep -E "probes|speed" "$OUT/sensitivity.log" || true
    grep -E "device:|peak GPU" "$OUT/sensitivity.log" || true
    echo
    echo "## FP32 and the quantized plan"
    cat "$OUT/eval.md"
    grep -E "device:|peak GPU" "$OUT/eval.log" || true
    echo
    echo "fp16: bitsearch writes no float16 graph yet; not measured."
} >> "$SUMMARY"
if [[ -n "${ZOO:-}" ]]; then
    folders=()
    for m in ${LARGE:-sdxl-f16}; do
        model=${m%-*}
        pipeline=$([[ $model == *pixart ]] || echo --pipeline)
        "$ZOO" "$model" $pipeline --dtype "${m##*-}" --out "$W/large/$m" > "$OUT/zoo-$m.log" 2>&1
        folders+=("$W/large/$m")
    done
    DEVICE=$DEVICE SHARDS=${SHARDS:-100} "$(dirname "$0")/bench-large.sh" "$BIN" "$OUT/large" "${folders[@]}"
    { echo; echo "## Real-size folders"; cat "$OUT/large/table.md"; } >> "$SUMMARY"
fi
cat "$SUMMARY"
