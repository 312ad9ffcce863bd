#!/usr/bin/env bash
# Create the whisper_lora_env virtual environment and install everything whisper-lora needs.
# Usage: chmod +x setup_environment.sh && ./setup_environment.sh
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
ENV_DIR=${ENV_DIR:-whisper_lora_env}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  echo "error: Python 3.9 or newer is needed (found: $("$PYTHON" --version 2>&1)); set PYTHON=python3.x" >&2
  exit 1
fi

if ! command -v espeak-ng >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "Installing espeak-ng (speech for the demo and tests)..."
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng || \
      echo "warning: could not install espeak-ng; the demo and tests need it" >&2
  elif command -v brew >/dev/null 2>&1; then
    brew install espeak-ng || echo "warning: could not install espeak-ng" >&2
  else
    echo "warning: install espeak-ng with your package manager for the demo and tests" >&2
  fi
fi

if [ ! -x "$ENV_DIR/bin/python" ]; then
  echo "Creating virtual environment $ENV_DIR ..."
  "$PYTHON" -m venv "$ENV_DIR"
fi
PY="$ENV_DIR/bin/python"
"$PY" -m pip install --upgrade pip

# PyTorch first: with a GPU driver present, pip's default torch wheel is the CUDA build;
# `pip install torch==2.13.0` is the CPU build where a local wheel is provided.
if ! "$PY" -c 'import torch' 2>/dev/null; then
  "$PY" -m pip install "torch==2.13.0" || "$PY" -m pip install "torch>=2.1,<3"
fi
"$PY" -m pip install -r requirements.txt

"$PY" -c 'import whisper_lora, torch; print("whisper-lora", whisper_lora.__version__, "| torch", torch.__version__, "| CUDA:", torch.cuda.is_available())'
echo
echo "Done. Activate the environment with:  source $ENV_DIR/bin/activate"
