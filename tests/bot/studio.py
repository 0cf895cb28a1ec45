"""The bot test rig's pieces (imported by the tests and by conftest.py): the Studio, settings for a bot
pointed at the sim, and queries of what the bot stored."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from agent_part import AgentPart

from bot.app import PhotogenBot, start_bot
from bot.backends import Backends, open_backends
from photogen.discord_sim.interactions import SimInteraction
from photogen.discord_sim.models import SimChannel, SimGuild, SimMember, SimMessage, SimRole
from photogen.discord_sim.server import DiscordSim
from storage import order_store, transaction
from storage.settings import Settings, load_settings

MANAGE_GUILD = 1 << 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Studio:
    sim: DiscordSim
    settings: Settings
    guild: SimGuild
    channel: SimChannel
    admin_role: SimRole
    alice: SimMember
    bob: SimMember
    admin: SimMember
    tmp: Path
    bot: PhotogenBot | None = None

    @property
    def b(self) -> Backends:
        assert self.bot is not None
        return self.bot.backends

    @property
    def agent(self) -> AgentPart:
        return AgentPart(self.b.queues, self.b.blobs)

    async def start(self) -> PhotogenBot:
        self.bot = await start_bot(self.settings, guild_ready_timeout=0.05)
        return self.bot

    async def restart(self) -> PhotogenBot:
        """A new bot instance on the same database, queues and blobs (a process restart, minus the process)."""
        assert self.bot is not None
        await self.bot.close()
        return await self.start()

    def seed_model(self, member: SimMember, name: str = "me", *, trained_in: SimGuild | None = None) -> str:
        """A trained model, as if a /train had finished earlier; ``trained_in``: made by a (delivered, free) train
        order in that server, with its photos and weights in the blob store."""
        from storage import keys

        model_id = f"m{member.id}" if trained_in is None else f"m{member.id}g{trained_in.id}"
        with transaction(self.b.engine) as s:
            order_store.get_or_create_user(s, member.id)
            order_id = None
            if trained_in is not None:
                order_id = order_store.create_order(
                    s,
                    user_id=member.id,
                    kind="train",
                    guild_id=trained_in.id,
                    model_id=model_id,
                    starting_credits=self.settings.starting_credits,
                ).id
                order_store.mark_delivered(s, order_id)
            order_store.add_model(
                s,
                user_id=member.id,
                name=name,
                class_word="woman",
                subject_token="sks",
                base_model="tiny-sd",
                model_id=model_id,
                order_id=order_id,
            )
            order_store.mark_model_ready(s, model_id, keys.model_key(member.id, model_id))
        if order_id is not None:
            self.b.blobs.put(keys.photo_key(member.id, order_id, 0), b"a face")
            self.b.blobs.put(keys.model_key(member.id, model_id), b"weights")
        return model_id

    def credits(self, member: SimMember, guild: SimGuild | None = None) -> int:
        """The member's credits in that server (default: the studio's)."""
        from storage import read_session, standing

        with read_session(self.b.engine) as s:
            return standing.credits_of(s, (guild or self.guild).id, member.id)


def bot_settings(sim: DiscordSim, tmp: Path, **overrides: object) -> Settings:
    port = free_port()
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp}/photogen.db",
        "queue_url": f"sqlite:///{tmp}/queue.db",
        "blob_url": f"file://{tmp}/blobs",
        "blob_public_base_url": f"http://127.0.0.1:{port}",
        "discord_token": sim.token,
        "discord_api_base": sim.api_base,
        "discord_gateway_url": sim.gateway_url,
        "bot_http_host": "127.0.0.1",
        "bot_http_port": port,
        "bot_event_wait_s": 0.2,
        "bot_progress_edit_interval_s": 0.0,
        "min_good_photos": 5,
        "train_steps": 10,
        "render_steps": 2,
        "render_size": 64,
    }
    values.update(overrides)
    return load_settings(**values)


async def answer(inter: SimInteraction, timeout: float = 10.0) -> SimMessage:
    """What the member sees as the answer to a command: the original response once it stops loading, or, for a
    refusal after a defer, the ephemeral followup that replaced the deleted "thinking…" placeholder."""

    def ready() -> bool:
        if inter.response is None:  # (for a click, the original is the clicked message until the bot answers)
            return False
        return bool(inter.followups) or (inter.original is not None and not inter.original.loading)

    await inter.sim.wait_until(ready, timeout)
    return inter.followups[0] if inter.followups else inter.original  # type: ignore[return-value]


async def private_answer(inter: SimInteraction, timeout: float = 10.0) -> SimMessage:
    """The answer, checked to be seen by the member alone: ephemeral, no public placeholder left behind."""
    message = await answer(inter, timeout)
    assert message.ephemeral, f"a public answer: {message.content!r} {message.embeds!r}"
    original = inter.original
    assert original is None or original is message or original.deleted or original.ephemeral, original
    return message


def stored_user_blobs(b: Backends) -> list[str]:
    return list(b.blobs.list("users/"))


def queued_messages(b: Backends) -> int:
    return sum(q.depth().backlog for q in (b.queues.train, b.queues.render))


def order_rows(b: Backends) -> int:
    from sqlmodel import func, select

    from storage import Order, read_session

    with read_session(b.engine) as s:
        return int(s.exec(select(func.count()).select_from(Order)).one())


__all__ = [
    "Studio",
    "answer",
    "bot_settings",
    "open_backends",
    "order_rows",
    "private_answer",
    "queued_messages",
    "stored_user_blobs",
]
