#!/usr/bin/env bash
# Fetches the terrain consistency UNet that the PyPI package adaptive-terrain-diffusion 0.4.2
# ships (MIT) and checks its sha256, so every machine analyses the same bytes.
# usage: fetch-terrain-model.sh PYTHON DEST_DIR SHA256
set -euo pipefail
py=$1 dest=$2 sha=$3
name=terrain_consistency_unet_difficulty100.onnx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m pip download --quiet --no-deps -d "$work" adaptive-terrain-diffusion==0.4.2
"$py" - "$work"/adaptive_terrain_diffusion-0.4.2-*.whl "$work/$name" "$name" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("terrain_diffusion/weights/" + sys.argv[3]))
PY
echo "$sha  $work/$name" | sha256sum --check --quiet || { echo "sha256 mismatch for $name" >&2; exit 1; }
mkdir -p "$dest" && mv "$work/$name" "$dest/$name"
echo "terrain model: $dest/$name"
