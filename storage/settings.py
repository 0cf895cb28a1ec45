"""The one typed settings object for every Photogen process.

It lives in ``storage`` because ``storage`` is the bottom of the dependency graph: the bot,
the agents and the cloud layer all read the same object. Values come from the environment
and from ``.env``; names are the upper-case field names (``DATABASE_URL``, ``DISCORD_TOKEN`` …).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

DASHBOARD_TOKEN_MIN = 32


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
    queue_prefix: str = Field(
        "photogen", description="Queue names are PREFIX-train, PREFIX-render, PREFIX-events."
    )
    queue_max_receives: int = Field(
        5, ge=1, le=1000, description="Deliveries before a message is dead-lettered."
    )
    blob_url: str = Field(
        "file://data/blobs", description="Blob store: file://DIR (local folder) or s3://BUCKET[/PREFIX]."
    )
    aws_region: str = Field("us-east-1", description="AWS region for SQS and S3.")
    aws_endpoint_url: str | None = Field(
        None, description="Endpoint for an S3/SQS-compatible server (MinIO, SeaweedFS, ElasticMQ, moto)."
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, overrides AWS_ENDPOINT_URL for S3.")
    sqs_endpoint_url: str | None = Field(
        None, description="SQS endpoint, overrides AWS_ENDPOINT_URL for SQS."
    )
    blob_url_expiry_s: int = Field(86400, ge=60, le=604800, description="Lifetime of presigned/served links.")
    blob_public_base_url: str | None = Field(
        None, description="Base URL under which the bot serves local blobs as expiring links."
    )
    blob_url_secret: SecretStr | None = Field(
        None,
        description="HMAC key that signs the bot's served links to local blobs; unset: one is generated and "
        "kept beside the blob folder.",
    )

    # --- Discord ------------------------------------------------------------------------
    discord_token: SecretStr | None = Field(None, description="Bot token from the Discord developer portal.")
    discord_api_base: str = Field("https://discord.com/api/v10", description="Discord REST base URL.")
    discord_gateway_url: str = Field("wss://gateway.discord.gg", description="Discord gateway websocket URL.")
    bot_owner_ids: list[int] = Field(
        default_factory=list,
        description="Discord user ids of the bot's owners (operators): they alone see global figures (cost, dead "
        "letters, agent host names) and take actions across servers (/owner ban, unban, purge; every server's "
        "dead letters; command sync).",
    )
    bot_http_host: str = Field("127.0.0.1", description="Bind address of the bot's HTTP side.")
    bot_http_port: int = Field(
        8080, ge=0, le=65535, description="Port of the bot's HTTP side (health, metrics)."
    )
    dashboard_token: SecretStr | None = Field(
        None, description="Bearer token for the admin dashboard and /metrics (at least 32 characters)."
    )
    supervisor_state_file: str | None = Field(
        None,
        description="Set by `photogen all` for its bot: where the supervisor records its children; "
        "/healthz answers 503 while one is down.",
    )

    # --- the HTTP API (photogen api, docs/API.md) -------------------------------------------
    api_host: str = Field("127.0.0.1", description="Bind address of `photogen api`.")
    api_port: int = Field(8090, ge=0, le=65535, description="Port of `photogen api`.")
    api_public_base_url: str | None = Field(
        None,
        description="Base URL tenants reach the API at, for result links (default http://API_HOST:API_PORT).",
    )
    api_rate_limit_per_minute: int = Field(
        600, ge=1, le=1_000_000, description="Requests one API key may make a minute."
    )
    api_max_concurrent_orders: int = Field(
        20, ge=1, le=10_000, description="Open orders one API subject may have."
    )
    api_daily_order_quota: int = Field(
        1000, ge=1, le=1_000_000, description="Orders one API subject may place a day."
    )
    api_link_ttl_s: int = Field(
        3600, ge=60, le=7 * 86400, description="How long a result link the API hands out stays valid."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Tries of one webhook delivery before it is marked failed."
    )
    webhook_retry_base_s: float = Field(
        2.0, gt=0, le=3600, description="Wait before a webhook's second try; doubled after each failed try."
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one webhook POST.")
    webhook_poll_s: float = Field(
        0.1, gt=0, le=60, description="How often the api process looks for webhook deliveries due."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks reach loopback, private, link-local and other non-public addresses (tests, a "
        "closed network). Off: a tenant's webhook can never make the api process call into its own network.",
    )

    # --- photos and orders --------------------------------------------------------------
    min_good_photos: int = Field(3, ge=1, le=20, description="Good photos needed to accept a training set.")
    fewshot_augment_below: int = Field(
        8,
        ge=0,
        le=50,
        description="A training set with fewer good photos than this is augmented by the agent (closer crops, "
        "mirror images, light changes, new backgrounds); 0 never augments.",
    )
    fewshot_variants_per_photo: int = Field(
        6, ge=1, le=8, description="New training pictures made from each photo of an augmented set."
    )
    max_photos: int = Field(20, ge=1, le=50, description="Most photos one /train accepts.")
    max_photo_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest photo file accepted.")
    max_photo_pixels: int = Field(
        40_000_000, ge=10_000, description="Largest decoded photo (decompression bombs)."
    )
    intake_max_total_bytes: int = Field(
        160 * 1024 * 1024,
        ge=1024,
        description="Most bytes one /train may download and unpack in all (photos and the insides of .zip files).",
    )
    intake_workers: int = Field(
        2, ge=1, le=32, description="Threads checking /train photos (their own pool)."
    )
    train_credit_cost: int = Field(10, ge=0, description="Credits one training costs.")
    render_credit_cost: int = Field(1, ge=0, description="Credits one render costs.")
    starting_credits: int = Field(50, ge=0, description="Credits a new member starts with.")
    credits_expire_days: int = Field(
        0,
        ge=0,
        le=36500,
        description="Granted credits (starting, admin grants) left unspent this many days expire (0 = never).",
    )

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
    agent_metrics_port: int = Field(
        9100, ge=0, le=65535, description="Port of the agent's /healthz and /metrics."
    )
    imds_url: str = Field(
        "http://169.254.169.254", description="EC2 instance metadata base URL (spot notices)."
    )
    imds_mode: Literal["auto", "on", "off"] = Field(
        "auto",
        description="When the agent polls IMDS: auto = EC2's address only on EC2 (detected from /sys), any other "
        "IMDS_URL always; on = always; off = never.",
    )
    imds_poll_s: float = Field(5.0, gt=0, le=300, description="How often the spot-notice watcher polls IMDS.")
    checkpoint_every_steps: int = Field(100, ge=1, description="Training checkpoint period in steps.")
    agent_work_dir: str = Field(
        "data/agent", description="The agent's scratch folder (downloads, checkpoints)."
    )
    agent_kinds: list[Literal["render", "train"]] = Field(
        # mypy reads the lambda as list[str], not the field's list of literals
        default_factory=lambda: ["render", "train"],  # type: ignore[arg-type]
        description='Which queues this agent serves (a render-only pool: ["render"]).',
    )
    agent_poll_wait_s: float = Field(
        10.0, ge=0, le=20, description="Long-poll wait of the agent on an idle queue."
    )
    agent_progress_every_s: float = Field(
        5.0, ge=0, le=600, description="Least time between two progress events."
    )
    agent_preview_every_steps: int = Field(
        100, ge=0, le=10_000, description="Training: a small preview render every N steps (0: no previews)."
    )
    agent_preview_min_interval_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Least time between two previews of one job (Discord allows a message a few edits a minute).",
    )
    agent_drain_s: float = Field(
        60.0,
        ge=0,
        le=110,
        description="After a spot notice or SIGTERM, how long a running render may finish before it is released "
        "(training checkpoints at once; AWS gives two minutes).",
    )
    agent_retry_delay_s: int = Field(
        30, ge=0, le=900, description="Delay before a job that failed is retried."
    )
    agent_scale_in_protection: bool = Field(
        True, description="On EC2 in an auto scaling group, a busy agent protects its instance from scale-in."
    )
    agent_metrics_host: str = Field(
        "127.0.0.1", description="Bind address of the agent's /healthz and /metrics."
    )
    agent_check_photos: bool = Field(
        True,
        description="Re-check the stored face crops (one face, no identical crops, one person) before training.",
    )

    # --- what an order asks of the engine (the demo and tests shrink these for the tiny models) ---------
    # train_*: unset means the photoreal recipe of the base model's family (cloud/recipes.py, docs/TRAINING.md)
    train_steps: int | None = Field(
        None, ge=1, le=20000, description="Training steps per model (unset: recipe)."
    )
    train_resolution: int | None = Field(
        None,
        ge=32,
        le=2048,
        multiple_of=8,
        description="Training resolution in pixels, square face crops, a multiple of 8 (unset: recipe).",
    )
    train_rank: int | None = Field(None, ge=1, le=256, description="LoRA rank (unset: recipe).")
    train_learning_rate: float | None = Field(
        None, gt=0, le=1e-2, description="UNet LoRA learning rate (unset: recipe)."
    )
    train_prior_preservation: bool | None = Field(
        None, description="Regularise with class images of the base model (unset: recipe, on)."
    )
    train_text_encoder: bool | None = Field(
        None, description="Also train text-encoder LoRAs (unset: recipe, on)."
    )
    train_class_images: int | None = Field(
        None,
        ge=1,
        le=2000,
        description="Class images for prior preservation, shared by all orders (unset: recipe).",
    )
    render_default_count: int = Field(
        4, ge=1, le=4, description="Pictures per /imagine when the member gives no count (4: a full grid)."
    )
    render_steps: int = Field(30, ge=1, le=150, description="Denoising steps per render.")
    group_consent_timeout_s: float = Field(
        600.0,
        ge=0.5,
        le=86400,
        description="How long each member asked into a /group picture has to accept; "
        "then the order ends, nothing rendered or charged.",
    )
    render_size: int = Field(
        512, ge=64, le=2048, description="Long side of a render in pixels (multiple of 64)."
    )
    render_max_pixels: int = Field(
        2048 * 2048,
        ge=64 * 64,
        description="Largest render (width x height, upscales included) an agent accepts.",
    )
    render_resident_loras: int = Field(
        4, ge=1, le=64, description="Members' LoRAs a render agent keeps loaded beside the base model (LRU)."
    )
    render_batch_max: int = Field(
        4,
        ge=1,
        le=16,
        description="Compatible render jobs (same base model, size, steps, sampler, guidance) an agent denoises "
        "in one mixed-member batch, each with its own LoRA (1: one job at a time).",
    )
    render_batch_wait_ms: int = Field(
        100,
        ge=0,
        le=2000,
        description="How long an agent that received a render waits for batch-mates before it starts.",
    )
    likeness_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="Extra renders (new seed, never charged) of a picture that does not look like "
        "the member or copies a training photo; the best one is delivered.",
    )
    likeness_advice_after: int = Field(
        3,
        ge=1,
        le=1000,
        description="Weak pictures of one model after which its owner is told what to change.",
    )
    render_face_detail: bool = Field(
        True,
        description="Redraw small faces of a render at full resolution (presets with face_detail, free prompts).",
    )
    render_face_detail_max_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Face detail redoes a face only when it covers less than this share of the picture.",
    )
    render_face_detail_max_faces: int = Field(
        3, ge=0, le=16, description="Most faces face detail redoes per picture."
    )
    render_face_detail_strength: float = Field(
        0.4, gt=0, le=1, description="Denoising strength of face detail's redraw of each face crop."
    )

    # --- safe to post (gpu_agent/agent/safety.py) and the upscaler (gpu_agent/engine/upscale.py) ------------
    safety_model_path: str = Field(
        "",
        description="NudeNet-format ONNX detector every picture is checked with; empty: the 320n model "
        "shipped inside the nudenet package.",
    )
    safety_threshold: float = Field(
        0.5, gt=0, le=1, description="A detection of a blocked label at this score or above flags a picture."
    )
    safety_blocked_labels: list[str] = Field(
        default_factory=lambda: [
            "FEMALE_BREAST_EXPOSED",
            "FEMALE_GENITALIA_EXPOSED",
            "MALE_GENITALIA_EXPOSED",
            "BUTTOCKS_EXPOSED",
            "ANUS_EXPOSED",
        ],
        description="Detector labels that flag a picture (NudeNet's label names).",
    )
    upscaler_model: str = Field(
        "",
        description="Learned x4 upscaler for the U button: a diffusers StableDiffusionUpscalePipeline "
        "(hub id, local folder, or tiny-upscaler for tests); empty: Lanczos 2x and a light re-denoise.",
    )
    upscale_refine: bool = Field(
        False, description="After the learned upscaler, also re-denoise lightly with the base model (slower)."
    )
    edit_model: str = Field(
        "timbrooks/instruct-pix2pix",
        description="InstructPix2Pix model of /edit and the Edit button (hub id in MODEL_CACHE_DIR, local "
        "folder, or tiny-ip2p for tests); loaded on an agent's first edit.",
    )
    # --- group pictures (gpu_agent/engine/group) ---------------------------------------------------------
    group_controlnet_model: str = Field(
        "lllyasviel/sd-controlnet-openpose",
        description="Pose ControlNet of group pictures, for the base model's "
        "family (hub id in MODEL_CACHE_DIR, local folder, or tiny-controlnet for tests).",
    )
    group_segmenter_model: str = Field(
        "CIDAS/clipseg-rd64-refined",
        description="CLIPSeg model that refines each person's region of a group "
        "picture (hub id in MODEL_CACHE_DIR, local folder, or tiny-clipseg for tests).",
    )
    group_member_strength: float = Field(
        0.55,
        gt=0,
        le=1,
        description="Denoising strength of each member's region, drawn with only their LoRA.",
    )
    group_harmonise_strength: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Denoising strength of the last pass over a whole group picture, without any "
        "member's LoRA (0: none).",
    )
    group_face_strength: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Denoising strength of each member's face pass in a group picture (steps x it run), "
        "with only their LoRA.",
    )

    # --- the AWS fleet (photogen aws …, photogen autoscaler) ------------------------------------
    fleet_name: str = Field(
        "photogen", description="Name prefix of the AWS resources (role, template, groups)."
    )
    fleet_ami_id: str | None = Field(
        None,
        description="AMI for agents: Docker, the NVIDIA container toolkit, the AWS CLI and an NVIDIA "
        "driver >= 580 (the AWS Deep Learning Base GPU AMI; docs/SELF_HOSTING.md).",
    )
    fleet_subnet_ids: list[str] = Field(
        default_factory=list, description="Subnets the agent groups launch into."
    )
    fleet_agent_image: str | None = Field(
        None,
        description="Agent container image the fleet runs: build and push docker/agent.Dockerfile "
        "(docs/SELF_HOSTING.md), e.g. ACCOUNT.dkr.ecr.REGION.amazonaws.com/photogen-agent:TAG; an ECR image "
        "is pulled with the agents' role.",
    )
    fleet_train_instance_types: list[str] = Field(
        default_factory=lambda: ["g5.xlarge", "g6.xlarge", "g4dn.xlarge", "g5.2xlarge", "g6.2xlarge"],
        description="Instance types of the training pool (spot, price-capacity-optimized).",
    )
    fleet_render_instance_types: list[str] = Field(
        default_factory=lambda: ["g5.xlarge", "g6.xlarge", "g4dn.xlarge"],
        description="Instance types of the render pool.",
    )
    fleet_train_max: int = Field(10, ge=0, le=1000, description="Most training instances.")
    fleet_render_max: int = Field(4, ge=0, le=1000, description="Most render instances.")
    fleet_render_on_demand: bool = Field(
        False,
        description="Render pool on on-demand with a warm pool (AWS refuses warm pools on spot groups).",
    )
    fleet_train_backend: Literal["autoscaling", "batch"] = Field(
        "autoscaling",
        description="Where trainings run: the train auto scaling group scaled on queue depth, or "
        "AWS Batch jobs (`photogen agent --once`) submitted for the backlog (`photogen aws bootstrap --batch`).",
    )
    fleet_security_group_ids: list[str] = Field(
        default_factory=list, description="Security groups of AWS Batch's instances (egress only is needed)."
    )
    fleet_batch_max_vcpus: int = Field(
        64, ge=1, le=100_000, description="Most vCPUs AWS Batch may run at once."
    )
    fleet_batch_attempts: int = Field(
        5, ge=1, le=10, description="Attempts of a Batch training job (spot reclaims and failures retry)."
    )
    fleet_batch_attempt_timeout_s: int = Field(
        4 * 3600, ge=60, description="A Batch attempt running longer than this is stopped (and retried)."
    )
    fleet_train_wait_s: float = Field(180, gt=0, description="Acceptable wait before a training starts.")
    fleet_render_wait_s: float = Field(60, gt=0, description="Acceptable wait before a render starts.")
    fleet_scale_in_after_s: float = Field(600, ge=0, description="Idle time before a pool scales in.")
    photo_retention_days: int = Field(
        30, ge=1, le=3650, description="S3 lifecycle: training photos expire after."
    )

    # --- the bot's limits and behaviour --------------------------------------------------------
    bot_sync_guild_ids: list[int] = Field(
        default_factory=list,
        description="Sync slash commands into these guilds (instant) instead of globally; empty = global.",
    )
    bot_rate_limit_per_minute: int = Field(
        20, ge=1, le=10000, description="Commands one member may run a minute."
    )
    bot_max_concurrent_orders: int = Field(
        2, ge=1, le=100, description="Open orders one member may have, unless the guild sets its own limit."
    )
    bot_daily_order_quota: int = Field(
        50,
        ge=1,
        le=100000,
        description="Orders one member may place a day, unless the guild or admin sets one.",
    )
    bot_progress_edit_interval_s: float = Field(
        5.0, ge=0, le=600, description="Least time between two progress edits of one status message."
    )
    bot_event_wait_s: float = Field(
        2.0, ge=0, le=20, description="Long-poll wait of the bot's event consumer."
    )
    delivery_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Attempts to post one result before it is given up (the member is told, admins alerted).",
    )
    reconcile_interval_s: float = Field(
        60.0, ge=0.05, le=3600, description="How often the bot looks for orders left without a live job."
    )
    reconcile_stuck_after_s: float = Field(
        1800.0,
        ge=0.1,
        le=7 * 86400,
        description="An active order without news for this long and without a live job (dead-lettered, never "
        "queued, or gone from an empty queue) is sent again once, then failed and refunded.",
    )
    deletion_resweep_s: float = Field(
        180.0,
        ge=0,
        le=86400,
        description="After a cancel, a model deletion or /forget-me, the bot deletes the member's files again this "
        "long after, catching uploads of work that was in flight. Keep it above AGENT_LEASE_S.",
    )

    # --- monitoring: dashboard samples, alerts, cost accounting -------------------------------------
    self_hosted_gpu_price_per_hour: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="USD per GPU-hour charged for jobs from an agent with no EC2 instance type (a self-hosted "
        "box: electricity, amortised card). 0 shows self-hosted jobs as free.",
    )
    fleet_prices_file: str | None = Field(
        None, description="Instance price table (JSON like cloud/fleet/prices.json); unset: the shipped one."
    )
    metrics_sample_interval_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="How often the bot samples queue depths and fleet size for the dashboard.",
    )
    metrics_retention_days: float = Field(
        14.0, gt=0, le=3650, description="Dashboard samples older than this are deleted."
    )
    dashboard_window_h: float = Field(
        24.0, gt=0, le=24 * 90, description="Time span the admin dashboard shows."
    )
    alert_channel_id: int | None = Field(
        None,
        description="The operators' channel for fleet alerts; unset: alerts are only logged (never posted "
        "to the servers' admin log channels).",
    )
    alert_interval_s: float = Field(60.0, ge=1, le=3600, description="How often alerts are evaluated.")
    alert_cooldown_s: float = Field(
        3600.0,
        ge=0,
        le=7 * 86400,
        description="A firing alert is posted again only after this long (or once cleared).",
    )
    alert_failure_ratio: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Alert when failed jobs / finished jobs over ALERT_FAILURE_WINDOW_S reaches this.",
    )
    alert_failure_window_s: float = Field(
        3600.0, ge=60, le=7 * 86400, description="Window of the failure-ratio alert."
    )
    alert_failure_min_jobs: int = Field(
        4,
        ge=1,
        le=100000,
        description="Finished jobs needed in the window before the failure ratio can alert.",
    )
    alert_wait_objective_s: float = Field(
        900.0, gt=0, le=86400, description="Alert when a queue's oldest waiting message is older than this."
    )
    alert_capacity_after_s: float = Field(
        600.0,
        ge=0,
        le=86400,
        description="Alert when a pool's desired capacity exceeds its running instances this long.",
    )
    agent_seen_window_s: float = Field(
        300.0,
        ge=10,
        le=86400,
        description="An agent counts in the fleet size if it sent an event this recently.",
    )

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

    @field_validator("dashboard_token")
    @classmethod
    def _check_dashboard_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value() and len(v.get_secret_value()) < DASHBOARD_TOKEN_MIN:
            raise ValueError(
                f"at least {DASHBOARD_TOKEN_MIN} characters (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return v

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for starting another Photogen process with the same
        configuration (the demo's agent, the end-to-end tests). Holds secrets: never log it."""
        import json as _json

        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[name.upper()] = _json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        return env


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    secret_type = info is not None and "SecretStr" in str(info.annotation)
    return secret_type or any(word in field.upper() for word in ("TOKEN", "SECRET", "PASSWORD", "KEY"))


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = field.upper() or "settings"
    message = str(first["msg"]).removeprefix("Value error, ")
    if _is_secret(field) or "input" not in first:
        return f"photogen: bad setting {name}: {message}"
    # A URL may carry credentials (https://user:password@host): never echo them.
    shown = re.sub(r"(?<=://)[^/@\s]+@", "***@", repr(first["input"]))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"photogen: bad setting {name}: {message} (got {shown})"


def _source_error_line(err: Exception) -> str:
    # pydantic-settings fails before validation when an environment value of a list setting is not JSON.
    match = re.search(r'field "([a-z0-9_]+)"', str(err))
    name = match.group(1).upper() if match else "settings"
    return f'photogen: bad setting {name}: not valid JSON (write a list as JSON, e.g. ["a", "b"] or [1, 2])'


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises SettingsError with one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(_one_line(err)) from None
    except PydanticSettingsError as err:
        raise SettingsError(_source_error_line(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
