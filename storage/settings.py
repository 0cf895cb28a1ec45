"""The one typed settings object for every Photogen process.

It lives in ``storage`` because ``storage`` is the bottom of the dependency graph: the bot,
the agents and the cloud layer all read the same object. Values come from the environment
and from ``.env``; names are the upper-case field names (``DATABASE_URL``, ``DISCORD_TOKEN`` …).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(SystemExit):
    """A bad setting: stops start-up with one line naming the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- where things live ---------------------------------------------------------------
    database_url: str = Field("sqlite:///data/photogen.db", description="Order store (SQLite, WAL mode).")
    queue_url: str = Field(
        "sqlite:///data/queue.db",
        description="Job queues: sqlite:///PATH (one host) or sqs:// (Amazon SQS in AWS_REGION).",
    )
    queue_prefix: str = Field("photogen", description="Queue names are PREFIX-train, PREFIX-render, PREFIX-events.")
    queue_max_receives: int = Field(5, ge=1, le=1000, description="Deliveries before a message is dead-lettered.")
    blob_url: str = Field(
        "file://data/blobs", description="Blob store: file://DIR (local folder) or s3://BUCKET[/PREFIX]."
    )
    aws_region: str = Field("us-east-1", description="AWS region for SQS and S3.")
    aws_endpoint_url: str | None = Field(
        None, description="Endpoint for an S3/SQS-compatible server (MinIO, SeaweedFS, ElasticMQ, moto)."
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, overrides AWS_ENDPOINT_URL for S3.")
    sqs_endpoint_url: str | None = Field(None, description="SQS endpoint, overrides AWS_ENDPOINT_URL for SQS.")
    blob_url_expiry_s: int = Field(86400, ge=60, le=604800, description="Lifetime of presigned/served links.")
    blob_public_base_url: str | None = Field(
        None, description="Base URL under which the bot serves local blobs as expiring links."
    )

    # --- Discord ------------------------------------------------------------------------
    discord_token: SecretStr | None = Field(None, description="Bot token from the Discord developer portal.")
    discord_api_base: str = Field("https://discord.com/api/v10", description="Discord REST base URL.")
    discord_gateway_url: str = Field("wss://gateway.discord.gg", description="Discord gateway websocket URL.")
    discord_owner_ids: list[int] = Field(default_factory=list, description="User ids allowed owner commands.")
    bot_http_host: str = Field("127.0.0.1", description="Bind address of the bot's HTTP side.")
    bot_http_port: int = Field(8080, ge=0, le=65535, description="Port of the bot's HTTP side (health, metrics).")
    dashboard_token: SecretStr | None = Field(None, description="Bearer token for the admin dashboard.")

    # --- photos and orders --------------------------------------------------------------
    min_good_photos: int = Field(5, ge=1, le=20, description="Good photos needed to accept a training set.")
    max_photos: int = Field(20, ge=1, le=50, description="Most photos one /train accepts.")
    max_photo_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest photo file accepted.")
    max_photo_pixels: int = Field(40_000_000, ge=10_000, description="Largest decoded photo (decompression bombs).")
    train_credit_cost: int = Field(10, ge=0, description="Credits one training costs.")
    render_credit_cost: int = Field(1, ge=0, description="Credits one render costs.")
    starting_credits: int = Field(50, ge=0, description="Credits a new member starts with.")

    # --- models and the GPU agent -------------------------------------------------------
    base_model: str = Field(
        "tiny-sd",
        description="Base model: tiny-sd / tiny-sdxl (built-in random test models that draw noise), "
        "a hub id, or a local path.",
    )
    model_cache_dir: str = Field("data/models", description="Where hub models and class images are cached.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Torch device for the agent.")
    agent_id: str | None = Field(None, description="Name of this agent in events (default: host name + pid).")
    agent_lease_s: int = Field(120, ge=5, le=43200, description="Visibility lease the agent takes on a job.")
    agent_heartbeat_s: int = Field(60, ge=1, le=43200, description="How often the agent renews its lease.")
    agent_metrics_port: int = Field(9100, ge=0, le=65535, description="Port of the agent's /healthz and /metrics.")
    imds_url: str = Field("http://169.254.169.254", description="EC2 instance metadata base URL (spot notices).")
    imds_poll_s: float = Field(5.0, gt=0, le=300, description="How often the spot-notice watcher polls IMDS.")
    checkpoint_every_steps: int = Field(100, ge=1, description="Training checkpoint period in steps.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str) -> str:
        if not v.startswith("sqlite:///"):
            raise ValueError("must be sqlite:///PATH (Photogen's order store is SQLite)")
        return v

    @field_validator("queue_url")
    @classmethod
    def _check_queue_url(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("sqs://")):
            raise ValueError("must be sqlite:///PATH or sqs://")
        return v

    @field_validator("blob_url")
    @classmethod
    def _check_blob_url(cls, v: str) -> str:
        if v.startswith("file://") and len(v) > len("file://"):
            return v
        if v.startswith("s3://") and len(v) > len("s3://"):
            return v
        raise ValueError("must be file://DIR or s3://BUCKET[/PREFIX]")

    @field_validator("queue_prefix")
    @classmethod
    def _check_prefix(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_-]{1,60}", v):
            raise ValueError("only letters, digits, '-' and '_' (at most 60)")
        return v

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "settings"
    shown = "" if "TOKEN" in name or "SECRET" in name else f" (got {first.get('input')!r})"
    return f"photogen: bad setting {name}: {first['msg']}{shown}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises SettingsError with one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(_one_line(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
