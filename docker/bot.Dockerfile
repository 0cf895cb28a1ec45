# The Discord bot: slash commands, photo checks at the door, the order store, delivery. No torch.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies from the manifest alone, before the source: a code change reuses this layer.
COPY pyproject.toml ./
COPY docker/install.sh docker/dependencies.py ./docker/
RUN ./docker/install.sh bot deps
COPY README.md ./
COPY bot ./bot
COPY cloud ./cloud
COPY gpu_agent ./gpu_agent
COPY storage ./storage
COPY photogen ./photogen
RUN ./docker/install.sh bot app
RUN useradd --create-home --uid 10001 photogen && mkdir -p /data && chown photogen /data
USER photogen
VOLUME ["/data"]
EXPOSE 8080
# --migrate: a fresh volume gets its order store (and an upgraded image its schema) before the bot starts.
CMD ["photogen", "bot", "--migrate"]
