#!/usr/bin/env bash
# Debian packages the build needs: cmake and libclang for HiGHS (built from source by the
# `highs-sys` crate behind good_lp). Installs only what is missing.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing ${missing[*]} (apt-get)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
