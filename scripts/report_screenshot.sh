#!/usr/bin/env bash
# Screenshot of a strategy-lab HTML report (lab/report.py, lab/sweep_report.py) with a headless browser.
#
#   scripts/report_screenshot.sh REPORT_HTML OUT_PNG
#
# e.g. scripts/report_screenshot.sh var/lab/run1/report.html docs/img/report.png
#
# Uses chromium (or chromium-browser / google-chrome, or $CHROMIUM) in headless mode with a 1280x2000 window
# (WINDOW_SIZE=W,H to change). If no browser is found and we run as root, installs the Debian package
# `chromium` with apt-get; otherwise says how to install it and exits 3. The report is self-contained, so the
# browser needs no network. Exit codes: 0 ok, 2 usage, 3 no browser, 4 screenshot failed.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -eq 2 ]] || usage
case "$1" in -h|--help) usage ;; esac
src=$1
out=$2
[[ -f $src ]] || { echo "report_screenshot: no such file: $src" >&2; exit 2; }

find_browser() {
  local c
  for c in "${CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
    [[ -n $c ]] && command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }
  done
  return 1
}

if ! browser=$(find_browser); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "report_screenshot: installing chromium with apt-get (one time, a few minutes)..." >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2; then
      echo "report_screenshot: apt-get install chromium failed" >&2; exit 3
    fi
    browser=$(find_browser) || { echo "report_screenshot: chromium installed but not found on PATH" >&2; exit 3; }
  else
    echo "report_screenshot: no headless browser found (chromium, chromium-browser, google-chrome)." >&2
    echo "  install one, e.g. 'sudo apt-get install chromium' on Debian/Ubuntu, or set CHROMIUM=/path/to/chrome" >&2
    exit 3
  fi
fi

abs_src=$(cd "$(dirname "$src")" && pwd)/$(basename "$src")
mkdir -p "$(dirname "$out")"
abs_out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
profile=$(mktemp -d "${TMPDIR:-/tmp}/report_screenshot.XXXXXX")
log=$profile/browser.log
trap 'rm -rf "$profile"' EXIT
rm -f "$abs_out"

# --no-sandbox: needed as root and in containers; the page is our own local file.
if ! timeout 120 "$browser" --headless --disable-gpu --no-sandbox --hide-scrollbars \
      --user-data-dir="$profile" --no-first-run --disable-extensions --mute-audio \
      --screenshot="$abs_out" --window-size="${WINDOW_SIZE:-1280,2000}" \
      "file://$abs_src" >"$log" 2>&1 || [[ ! -s $abs_out ]]; then
  echo "report_screenshot: $browser did not write $out; its output:" >&2
  tail -20 "$log" >&2
  exit 4
fi
echo "$out"
