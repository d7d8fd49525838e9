#!/usr/bin/env bash
# Set everything up (idempotent) and start the main job. Arguments are passed to it.
#
#   bash scripts/run.sh
#
# Until the web UI lands this starts the terminal chat on the embedded defaults; the command stays
# the same when it becomes the web UI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/empathic chat "$@"
