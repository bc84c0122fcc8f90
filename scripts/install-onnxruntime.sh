#!/usr/bin/env bash
# Installs ONNX Runtime's shared library from its PyPI wheel into a project-local folder,
# because ort's own binary download cannot work on machines that reach only package registries.
# usage: install-onnxruntime.sh PYTHON PACKAGE VERSION DEST
set -euo pipefail
py=$1 package=$2 version=$3 dest=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$package==$version"
wheel=$(ls "$work"/*.whl)
"$py" - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/lib"
# The library and, for the GPU wheel, its provider libraries sit together in capi/.
cp "$work"/unpacked/onnxruntime/capi/libonnxruntime*.so* "$dest.tmp/lib/"
lib=$(ls "$dest.tmp"/lib/libonnxruntime.so.* | head -n 1)
ln -sf "$(basename "$lib")" "$dest.tmp/lib/libonnxruntime.so"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "ONNX Runtime ($package $version) installed in $dest/lib"
