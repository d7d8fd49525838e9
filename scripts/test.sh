#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: unit tests (fakes) and integration
# tests (real embedded LLM, real OpenAI-compatible server process). Arguments go to pytest.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Offline by construction: nothing in the tests may reach a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
exec .venv/bin/python -m pytest -q -ra "$@"
