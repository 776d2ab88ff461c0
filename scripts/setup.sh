#!/usr/bin/env bash
# Set up traintop on a fresh machine, idempotently: a virtual environment in .venv with the package
# (editable), its trainer ([train]) and its dev tools, .venv-f5 with the F5-TTS extra, plus tmux for
# the terminal end-to-end test and Debian's chromium for the browser test of `traintop serve`.
# TRAINTOP_SETUP=demo (scripts/demo.sh) installs only what the demo needs: .venv with [train], no dev
# tools, no F5 environment, no system packages. Safe to run again: it skips pip when pyproject.toml
# has not changed since the last successful install of the same extras (or of more).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

# pip_install VENV ARGS...: torch's CUDA wheels are several GB from PyPI, and a connection cut mid-file
# has failed a whole CI run (pip resumed at the same byte 5 times); upgrade pip (it resumes cut
# downloads), then retry the install afresh a few times before giving up.
pip_install() {
    local venv="$1"; shift
    local attempt
    for attempt in 1 2 3 4; do
        if "$venv/bin/python" -m pip install --quiet --upgrade pip \
            && "$venv/bin/python" -m pip install --quiet --resume-retries 20 "$@"; then
            return 0
        fi
        echo "traintop setup: pip install $* failed (attempt $attempt of 4); retrying"
        sleep $((attempt * 5))
    done
    echo "traintop setup: pip install $* failed 4 times; see pip's error above" >&2
    return 1
}

if [ ! -x .venv/bin/python ]; then
    echo "traintop setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

demo_only=""
[ "${TRAINTOP_SETUP:-all}" = "demo" ] && demo_only=1
extras="dev,train"
[ -n "$demo_only" ] && extras="train"
stamp=".venv/.traintop-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
# the stamp says which extras were installed from which pyproject.toml; dev,train covers train
if [ "$have" != "$want $extras" ] && [ "$have" != "$want dev,train" ]; then
    echo "traintop setup: installing traintop[$extras] (torch, coqui-tts: a few minutes the first time)"
    pip_install .venv -e ".[$extras]"
    echo "$want $extras" > "$stamp"
fi
[ -n "$demo_only" ] && exit 0

# F5-TTS lives in its own environment: f5-tts pulls cached_path, which caps rich below 14, and that
# resolves textual down to 6.x; the watcher's own environment keeps the textual its snapshots are drawn
# with. TRAINTOP_SKIP_F5=1 skips it (the F5 tests then skip, saying how to install the extra).
if [ "${TRAINTOP_SKIP_F5:-0}" != "1" ]; then
    if [ ! -x .venv-f5/bin/python ]; then
        echo "traintop setup: creating .venv-f5 (the F5-TTS recipes and their tests)"
        "$PYTHON" -m venv .venv-f5
    fi
    stamp_f5=".venv-f5/.traintop-installed"
    if [ "$(cat "$stamp_f5" 2>/dev/null || true)" != "$want" ]; then
        echo "traintop setup: installing traintop[f5] into .venv-f5 (a few minutes the first time)"
        pip_install .venv-f5 -e '.[dev,f5]'
        echo "$want" > "$stamp_f5"
    fi
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
