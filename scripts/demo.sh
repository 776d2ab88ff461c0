#!/usr/bin/env bash
# Set up (idempotently) and run the demo: a tiny real model training on synthesized speech, watched live.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/traintop demo "$@"
