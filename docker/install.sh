#!/usr/bin/env bash
# The install step of both images, kept in one script so CI can run exactly what the Dockerfiles run.
#   docker/install.sh bot    — the bot: no torch, Pillow + the face detector for the photo checks
#   docker/install.sh agent  — the GPU agent: torch first (TORCH_SPEC, CUDA build by default), then the ML stack
# Runs in the current Python environment (the image's, or a venv in CI).
set -euo pipefail
role=${1:?usage: docker/install.sh bot|agent}
src=${PHOTOGEN_SRC:-.}
python -m pip install --no-cache-dir --upgrade pip setuptools wheel
case "$role" in
  bot)   python -m pip install --no-cache-dir "$src" ;;
  agent) python -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch>=2.4,<3}"
         python -m pip install --no-cache-dir "$src[agent]" ;;
  *)     echo "unknown role: $role" >&2; exit 2 ;;
esac
python -c "import bot, cloud, gpu_agent, storage, photogen" 
[ "$role" = agent ] && python -c "import torch, diffusers, peft; print('torch', torch.__version__)" || true
