#!/usr/bin/env bash
# Set up (idempotently) and run every check: ruff, mypy over traintop/, the whole pytest suite (the
# layers' import contracts included), then the F5-TTS tests in their own environment (.venv-f5; see
# scripts/setup.sh for why it is separate).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy  # [tool.mypy] in pyproject.toml: traintop/, no stubs for torch and coqui
rc=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || rc=$?
if [ -x .venv-f5/bin/python ] && [ "${TRAINTOP_SKIP_F5:-0}" != "1" ] && [ $# -eq 0 ]; then
    echo "traintop tests: the F5-TTS recipes, in .venv-f5"
    .venv-f5/bin/python -m pytest -q -p no:cacheprovider tests/trainer/f5 -m "not needs_no_f5" || rc=$?
fi
exit $rc
