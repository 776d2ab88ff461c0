#!/usr/bin/env bash
# Set up traintop on a fresh machine, idempotently: a virtual environment in .venv with the package
# (editable) and its dev tools, plus tmux for the terminal end-to-end test. Safe to run again: it
# skips pip when pyproject.toml has not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "traintop setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

stamp=".venv/.traintop-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "traintop setup: installing traintop and its dependencies (torch, coqui-tts: a few minutes the first time)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$want" > "$stamp"
fi

# tmux drives the end-to-end test of `traintop demo` in a real terminal
if ! command -v tmux >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "traintop setup: installing tmux"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null) \
            || echo "traintop setup: could not install tmux; the tmux end-to-end test will be skipped"
    else
        echo "traintop setup: tmux is missing and cannot be installed here; the tmux end-to-end test will be skipped"
    fi
fi
