#!/usr/bin/env bash
# Set everything up (idempotent) and start the main job. Arguments are passed to it.
#
#   bash scripts/run.sh
#
# Starts the web UI on the embedded defaults at http://127.0.0.1:7860/ (app.py; --port, --host,
# --auth user:password). The terminal chat is `.venv/bin/empathic chat`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
