#!/usr/bin/env bash
# One-time (idempotent) set-up for `make run` / `make test` on Debian/Ubuntu:
# redis-server (apt, when root or passwordless sudo), a .venv with the project and test deps.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
  else
    return 1
  fi
}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server with apt-get"
  if ! apt_install redis-server; then
    echo "bootstrap: redis-server is missing and I cannot install it (not root, no passwordless sudo)." >&2
    echo "bootstrap: install it with: sudo apt-get install -y redis-server   (macOS: brew install redis)" >&2
    exit 1
  fi
fi

# make test also wants the tools its tests drive: tmux (the status view's screen), promtool (the alert
# rules), amtool (the Alertmanager config). Missing and not installable: those tests skip, saying why.
if [ "${BOOTSTRAP_TEST:-0}" = 1 ]; then
  need=()
  command -v tmux >/dev/null 2>&1 || need+=(tmux)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
  if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]} with apt-get (for the tests)"
    apt_install "${need[@]}" || echo "bootstrap: could not install ${need[*]}; the tests that need them will skip" >&2
    # the Debian package starts a prometheus service on :9090; the tests run their own tools only
    if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus prometheus-alertmanager >/dev/null 2>&1 || true; fi
  fi
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "bootstrap: Python >= 3.11 is required ($PY is $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    echo "bootstrap: installing python3-venv with apt-get"
    apt_install python3-venv || { echo "bootstrap: run: sudo apt-get install -y python3-venv" >&2; exit 1; }
    "$PY" -m venv .venv
  fi
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
