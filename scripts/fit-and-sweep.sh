# Sourced by the bench scripts: a prediction fit and the sweep it is checked on.
#
#   fit_and_sweep MODEL TABLE DIR
#
# Measures the plans of the 8 budgets $FIT on the selection items and fits how single-layer
# losses combine, then solves the 7 other budgets $SWEEP without and with the fit (the same
# plans: a monotone map of one metric group's sum moves no optimum) and measures the fitted
# sweep's plans, simulated, on held-out items with `bitsearch eval`; scripts/prediction-table.py
# DIR reads the result. Uses $BIN and the caller's arrays solve_flags (every solve), fit_flags
# (the fit alone: --selection-prompts, --calibration-seeds) and eval_flags.
# The fit's budgets span the range from near the smallest plan (every layer at 2 bits) to
# every layer at 8; the evaluated sweep's budgets lie between them, none shared.
FIT=avg-bits=2.1..8:8
SWEEP=avg-bits=2.5..7.5:7

fit_and_sweep() {
    local model=$1 table=$2 dir=$3
    rm -rf "$dir/additive" "$dir/fitted"
    "$BIN" solve --sensitivity "$table" --sweep "$FIT" --fit-prediction "${solve_flags[@]}" "${fit_flags[@]}" \
        --out "$dir/prediction-fit.yaml" | tee "$dir/fit.txt"
    "$BIN" solve --sensitivity "$table" --sweep "$SWEEP" "${solve_flags[@]}" --out "$dir/additive" -q
    "$BIN" solve --sensitivity "$table" --sweep "$SWEEP" "${solve_flags[@]}" \
        --prediction-fit "$dir/prediction-fit.yaml" --out "$dir/fitted" -q
    local plans=()
    for plan in "$dir/fitted"/plan_*.yaml; do plans+=(--simulate "$plan"); done
    "$BIN" eval "$model" "${plans[@]}" "${eval_flags[@]}" --repeats 1 --out "$dir/eval.parquet" \
        --markdown "$dir/eval.md"
}
