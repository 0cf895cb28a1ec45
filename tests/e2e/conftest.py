"""Fixtures of the end-to-end tests: the sim, settings for one backend (embedded or SQS + S3 on moto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from e2e_system import MANAGE_GUILD, System
from pydantic import SecretStr

from photogen.discord_sim import DiscordSim
from storage import migrate
from storage.settings import load_settings


def _backend_settings(backend: str, tmp: Path, moto: str | None, name: str) -> dict[str, object]:
    if backend == "embedded":
        return dict(queue_url=f"sqlite:///{tmp / 'queue.db'}", blob_url=f"file://{tmp / 'blobs'}")
    assert moto is not None
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto).create_bucket(Bucket=name)
    return dict(
        queue_url="sqs://", blob_url=f"s3://{name}/photogen", aws_endpoint_url=moto, queue_prefix=name
    )


@pytest.fixture(params=["embedded", "aws"])
async def system(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> AsyncIterator[System]:
    moto = request.getfixturevalue("moto_endpoint") if request.param == "aws" else None
    sim = DiscordSim()
    await sim.start()
    guild = sim.add_guild("E2E Studio")
    admin = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    channel = sim.add_channel(guild, "studio")
    members = {
        "alice": sim.add_member(guild, "alice"),
        "bob": sim.add_member(guild, "bob"),
        "ada": sim.add_member(guild, "ada", roles=[admin]),
    }
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'photogen.db'}",
        **_backend_settings(request.param, tmp_path, moto, unique_name),
        discord_api_base=sim.api_base,
        discord_gateway_url=sim.gateway_url,
        discord_token=SecretStr(sim.token),
        base_model="tiny-sd",
        model_cache_dir=str(tmp_path.parent / "models"),
        train_steps=24,
        train_resolution=64,
        train_class_images=4,
        render_steps=4,
        render_size=64,
        checkpoint_every_steps=4,
        agent_lease_s=6,
        agent_heartbeat_s=2,
        agent_poll_wait_s=1,
        agent_progress_every_s=1,
        agent_metrics_port=0,
        bot_http_port=0,
        bot_event_wait_s=0.5,
        starting_credits=100,
    )
    migrate(settings.database_url)
    system = System(sim, settings, tmp_path, guild, channel, members)
    try:
        yield system
    finally:
        system.stop_all()
        await sim.stop()
