#!/usr/bin/env bash
# Set up traintop on a fresh machine, idempotently: a virtual environment in .venv with the package
# (editable), its trainer ([train]) and its dev tools, plus tmux for the terminal end-to-end test and
# Debian's chromium for the browser test of `traintop serve`. Safe to run again: it skips pip when
# pyproject.toml has not changed since the last successful install.
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
    .venv/bin/python -m pip install --quiet -e '.[dev,train]'
    echo "$want" > "$stamp"
fi

# System packages the end-to-end tests drive: tmux (`traintop demo` in a real terminal) and
# chromium (`traintop serve` in a real browser). Missing ones are installed with apt when root;
# otherwise their tests are skipped, saying why.
apt_updated=""
need() {  # need COMMAND PACKAGE... : install PACKAGEs when COMMAND is missing
    local cmd="$1"; shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "traintop setup: installing $*"
        if [ -z "$apt_updated" ]; then apt-get update -qq || true; apt_updated=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
            || echo "traintop setup: could not install $*; the tests that need $cmd will be skipped"
    else
        echo "traintop setup: $cmd is missing and cannot be installed here; the tests that need it will be skipped"
    fi
}
need tmux tmux
need chromium chromium
