#!/usr/bin/env bash
# Set up (idempotently) and run the demo: a tiny real model training on synthesized speech, watched live.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAINTOP_SETUP=demo bash scripts/setup.sh  # the trainer only: no dev tools, no F5 environment, no browser
exec .venv/bin/traintop demo "$@"
