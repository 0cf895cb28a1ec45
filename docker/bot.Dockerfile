# The Discord bot: slash commands, photo checks at the door, the order store, delivery. No torch.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cloud ./cloud
COPY gpu_agent ./gpu_agent
COPY storage ./storage
COPY photogen ./photogen
COPY docker/install.sh ./docker/install.sh
RUN ./docker/install.sh bot
RUN useradd --create-home --uid 10001 photogen && mkdir -p /data && chown photogen /data
USER photogen
VOLUME ["/data"]
EXPOSE 8080
CMD ["photogen", "bot"]
