#!/usr/bin/env bash
# Data flows one way through records: the stages that only read tables and plans (solver,
# reports) must not link ONNX Runtime or the generation stack, and the records crate must link
# neither ONNX Runtime nor HiGHS. Fails naming the package and the dependency that breaks it.
set -euo pipefail

check() {
    local package=$1
    shift
    local tree
    tree=$(cargo tree --quiet -e normal -p "$package" --prefix none)
    for banned in "$@"; do
        if grep -q "^$banned v" <<<"$tree"; then
            echo "check-deps: $package depends on $banned (see: cargo tree -e normal -p $package -i $banned)" >&2
            exit 1
        fi
    done
}

generation=(ort ort-sys bitsearch-runtime bitsearch-pipeline bitsearch-sensitivity)
check bitsearch-records "${generation[@]}" highs highs-sys good_lp
check bitsearch-solver "${generation[@]}"
check bitsearch-reports "${generation[@]}" highs highs-sys good_lp bitsearch-solver
echo "check-deps: records, solver and reports link neither ONNX Runtime nor the generation stack"
