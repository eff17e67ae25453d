#!/usr/bin/env bash
# Renders an ordo HTML report (`ordo report --format html`) to a PNG with headless Chromium
# (Debian's `chromium`; CHROMIUM overrides the binary) and fails if Chromium fails or the page
# reports an error.
#
#   scripts/render-report.sh REPORT.html OUT.png [WIDTH,HEIGHT]     (default 1400,2000)
#
# Page errors are Chromium's console messages (the report has no script, so any message is an
# error) and its ERROR/FATAL log lines, except those about the machine rather than the page
# (D-Bus, GPU, sandbox, power), which a headless container always prints. They go to stderr and
# the script exits 1. RENDER_REPORT_LOG=1 prints Chromium's whole log.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
html=$1
png=$2
size=${3:-1400,2000}
chromium=${CHROMIUM:-chromium}

if ! command -v "$chromium" >/dev/null 2>&1; then
  echo "render-report: $chromium not found (Debian: apt-get install chromium)" >&2
  exit 127
fi
if [ ! -f "$html" ]; then
  echo "render-report: no such file: $html" >&2
  exit 2
fi

profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT

abs=$(realpath "$html")
url="file://$(printf '%s' "$abs" | sed 's/%/%25/g; s/ /%20/g; s/#/%23/g; s/?/%3F/g')"
rm -f "$png"

status=0
timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --no-default-browser-check \
  --enable-logging=stderr --log-level=0 --user-data-dir="$profile" \
  --screenshot="$png" --window-size="$size" "$url" >"$log" 2>&1 || status=$?

if [ "${RENDER_REPORT_LOG:-}" = 1 ]; then
  cat "$log" >&2
fi

errors=$(grep -E ':CONSOLE[:(]|:(ERROR|FATAL):' "$log" |
  grep -vE ':(ERROR|FATAL):(dbus/|.*bus\.cc|.*object_proxy\.cc|gpu/|.*viz_|.*gl_|.*angle|.*vaapi|.*sandbox|.*power|.*upower|.*idle_)' ||
  true)

if [ "$status" -ne 0 ]; then
  echo "render-report: chromium exited with status $status" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
if [ -n "$errors" ]; then
  echo "render-report: chromium reported errors for $html:" >&2
  printf '%s\n' "$errors" >&2
  exit 1
fi
if [ ! -s "$png" ] || [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
  echo "render-report: chromium wrote no PNG to $png" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "rendered $html to $png ($(wc -c <"$png") bytes, $size)"
