#!/usr/bin/env bash
# Opens a bitsearch report in headless Chromium, fails unless every <img> loaded
# (naturalWidth > 0), and writes a screenshot of the top of the page.
# usage: check-report.sh REPORT_DIR SCREENSHOT.png
set -euo pipefail
dir=$(cd "$1" && pwd) shot=$2
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "chromium is not installed (apt-get install chromium)" >&2
    exit 2
fi
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars)
profile=$(mktemp -d)
probe="$dir/.check-images.html"
trap 'rm -rf "$profile" "$probe"' EXIT
# The page itself has no script; a copy gets one that records the images that failed to load.
sed 's#</body>#<script>window.addEventListener("load", () => { const imgs = [...document.images]; document.body.dataset.images = imgs.length; document.body.dataset.broken = imgs.filter(i => !(i.complete \&\& i.naturalWidth > 0)).map(i => i.getAttribute("src")).join(" "); });</script></body>#' \
    "$dir/index.html" > "$probe"
dom=$("$browser" "${flags[@]}" --user-data-dir="$profile" --virtual-time-budget=10000 --dump-dom "file://$probe" 2>/dev/null)
images=$(grep -o 'data-images="[0-9]*"' <<<"$dom" | grep -o '[0-9]*' || true)
broken=$(grep -o 'data-broken="[^"]*"' <<<"$dom" | sed 's/data-broken="//; s/"$//' || true)
if [ -z "$images" ]; then
    echo "the page did not finish loading in Chromium" >&2
    exit 1
fi
if [ -n "$broken" ]; then
    echo "images that did not load: $broken" >&2
    exit 1
fi
"$browser" "${flags[@]}" --user-data-dir="$profile" --window-size=1280,1400 --screenshot="$shot" "file://$dir/index.html" 2>/dev/null
echo "$images images loaded; screenshot: $shot"
