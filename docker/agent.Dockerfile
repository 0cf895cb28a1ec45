# The GPU agent: trains and renders. torch is pinned (TORCH_SPEC): PyPI's Linux build of torch 2.13.0 is a CUDA 13.0
# build, which needs an NVIDIA driver >= 580 and a GPU of compute capability >= 7.5 (T4, A10G, L4 and newer); the
# VRAM each base model needs: docs/SELF_HOSTING.md. Another build: --build-arg TORCH_SPEC=… [TORCH_INDEX_URL=…].
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HOME=/data/hf
WORKDIR /app
# Dependencies from the manifest alone, before the source: a code change reuses this layer (torch is not reinstalled).
COPY pyproject.toml ./
COPY docker/install.sh docker/dependencies.py ./docker/
RUN TORCH_SPEC="$TORCH_SPEC" TORCH_INDEX_URL="$TORCH_INDEX_URL" ./docker/install.sh agent deps
COPY README.md ./
COPY bot ./bot
COPY cloud ./cloud
COPY gpu_agent ./gpu_agent
COPY storage ./storage
COPY photogen ./photogen
RUN ./docker/install.sh agent app
RUN useradd --create-home --uid 10001 photogen && mkdir -p /data && chown photogen /data
USER photogen
VOLUME ["/data"]
EXPOSE 9100
CMD ["photogen", "agent"]
