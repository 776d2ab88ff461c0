#!/usr/bin/env bash
# Set up (idempotently) and run the demo: a tiny real model training on synthesized speech, watched live.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAINTOP_SKIP_F5="${TRAINTOP_SKIP_F5:-1}" bash scripts/setup.sh  # the demo needs no F5-TTS environment
exec .venv/bin/traintop demo "$@"
