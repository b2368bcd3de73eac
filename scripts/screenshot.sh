#!/usr/bin/env bash
# A PNG of a report.html, as a browser shows it: headless Chromium, a
# window 1400 pixels wide and 3000 high (the top of the page: the
# charts and the first tables).
#
#     scripts/screenshot.sh                          # zen-report/report.html -> zen-report/report.png
#     scripts/screenshot.sh /tmp/zen-html/report.html [out.png] [WIDTHxHEIGHT]
#
# Needs Chromium: if it is missing and this runs as root, it installs
# the Debian package `chromium` (apt-get); otherwise it says so and stops.
# CI does not run this script.
set -euo pipefail

html=${1:-zen-report/report.html}
png=${2:-${html%.html}.png}
size=${3:-1400x3000}

if [ ! -f "$html" ]; then
    echo "no $html: run \`client compare\` first (it writes report.html into --out)" >&2
    exit 1
fi

browser=
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null; then
        browser=$candidate
        break
    fi
done
if [ -z "$browser" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "needs Chromium: apt-get install chromium (as root), then run this again" >&2
        exit 1
    fi
    echo "installing chromium (apt-get) ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    browser=chromium
fi

url="file://$(realpath "$html")"
png=$(realpath -m "$png")
# --no-sandbox: Chromium refuses to run as root with its sandbox.
args=(--headless --disable-gpu --hide-scrollbars --no-first-run
    "--screenshot=$png" "--window-size=${size/x/,}" "$url")
if [ "$(id -u)" -eq 0 ]; then
    args=(--no-sandbox "${args[@]}")
fi
"$browser" "${args[@]}" 2>/dev/null || "$browser" "${args[@]}"
if [ ! -s "$png" ]; then
    echo "$browser wrote no $png" >&2
    exit 1
fi
echo "$png"
