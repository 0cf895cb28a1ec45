#!/usr/bin/env bash
# The install step of both images, kept in one script so CI can run exactly what the Dockerfiles run.
#   docker/install.sh bot [deps|app]    — the bot: no torch, Pillow + the face detector for the photo checks
#   docker/install.sh agent [deps|app]  — the GPU agent: torch first (TORCH_SPEC, pinned by docker/agent.Dockerfile),
#                                         then the ML stack
# deps: the role's dependencies, read from pyproject.toml alone (docker/dependencies.py). The images run this step
#       before they copy the source, so a code change reuses its layer and never reinstalls torch.
# app:  the project itself, without dependencies. Neither (CI): both.
# Runs in the current Python environment (the image's, or a venv in CI).
set -euo pipefail
role=${1:?usage: docker/install.sh bot|agent [deps|app]}
step=${2:-all}
src=${PHOTOGEN_SRC:-.}
here=$(cd "$(dirname "$0")" && pwd)
case "$role" in bot|agent) ;; *) echo "unknown role: $role (bot, agent)" >&2; exit 2 ;; esac
case "$step" in deps|app|all) ;; *) echo "unknown step: $step (deps, app)" >&2; exit 2 ;; esac
if [ "$step" != app ]; then
  python -m pip install --no-cache-dir --upgrade pip setuptools wheel
  if [ "$role" = agent ]; then
    torch=${TORCH_SPEC:?set TORCH_SPEC, e.g. torch==2.13.0 (docker/agent.Dockerfile pins it)}
    python -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch"
  fi
  requirements=$(mktemp)
  python "$here/dependencies.py" "$src/pyproject.toml" "$role" > "$requirements"
  python -m pip install --no-cache-dir -r "$requirements"
  rm -f "$requirements"
fi
if [ "$step" != deps ]; then
  python -m pip install --no-cache-dir --no-deps "$src"
  python -m pip check
  python -c "import bot, cloud, gpu_agent, storage, photogen"
  [ "$role" = agent ] && python -c "import torch, diffusers, peft; print('torch', torch.__version__)" || true
fi
