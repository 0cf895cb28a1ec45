# The GPU agent: trains and renders. torch comes first (a CUDA build from PyPI by default; set TORCH_SPEC /
# TORCH_INDEX_URL build args to pin another), then diffusers, peft, transformers, accelerate.
FROM python:3.11-slim
ARG TORCH_SPEC="torch>=2.4,<3"
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HOME=/data/hf
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cloud ./cloud
COPY gpu_agent ./gpu_agent
COPY storage ./storage
COPY photogen ./photogen
COPY docker/install.sh ./docker/install.sh
RUN TORCH_SPEC="$TORCH_SPEC" TORCH_INDEX_URL="$TORCH_INDEX_URL" ./docker/install.sh agent
RUN useradd --create-home --uid 10001 photogen && mkdir -p /data && chown photogen /data
USER photogen
VOLUME ["/data"]
EXPOSE 9100
CMD ["photogen", "agent"]
