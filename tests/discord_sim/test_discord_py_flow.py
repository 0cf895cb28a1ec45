"""The real discord.py 2.x client against the sim over real sockets: login, sync, a slash command with an
attachment, defer, followup with a file, a persistent button, 429 handling, nonce dedupe, wrong token."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from sim_world import BotFactory, World

from photogen.discord_sim import SimError


class CancelView(discord.ui.View):
    """Persistent: timeout=None and a fixed custom_id, so a click works after a restart."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.danger, custom_id="pg:cancel")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[CancelView]) -> None:
        await interaction.response.edit_message(content=f"cancelled by {interaction.user.name}", view=None)


def make_bot() -> commands.Bot:
    bot = commands.Bot(
        command_prefix=commands.when_mentioned, intents=discord.Intents.default(), guild_ready_timeout=0.05
    )

    @bot.tree.command(name="train", description="Train a model on your photo")
    @app_commands.describe(photo="a photo of you", name="the model's name")
    async def train(interaction: discord.Interaction, photo: discord.Attachment, name: str) -> None:
        await interaction.response.defer(thinking=True)
        data = await photo.read()  # downloaded from the sim's CDN
        digest = hashlib.sha256(data).hexdigest()[:12]
        await interaction.followup.send(
            f"{name}: got {photo.filename} ({len(data)} bytes, {digest})",
            file=discord.File(io.BytesIO(data[::-1]), filename="reversed.bin"),
            view=CancelView(),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def setup_hook() -> None:
        bot.add_view(CancelView())

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


async def test_slash_command_defer_followup_file_and_button_after_restart(
    world: World, run_bot: BotFactory
) -> None:
    sim = world.sim
    bot = await run_bot(make_bot())
    synced = await bot.tree.sync()
    assert [c.name for c in synced] == ["train"]
    assert sim.sync_count == 1 and sim.sync_log == [(None, ["train"])]
    option = sim.global_commands[0]["options"][0]
    assert (option["name"], option["type"]) == ("photo", 11)

    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    inter = await sim.invoke_command(
        world.alice, world.photos, "train", {"name": "me"}, attachments=[("face.jpg", photo)]
    )
    response = await inter.wait_response()
    assert response.deferred and response.type == 5 and response.latency_s < 3
    reply = await inter.wait_followup(timeout=10)
    digest = hashlib.sha256(photo).hexdigest()[:12]
    assert reply.content == f"me: got face.jpg ({len(photo)} bytes, {digest})"
    assert reply.files == {"reversed.bin": photo[::-1]}
    assert reply.allowed_mentions == {"parse": []}
    assert reply.custom_ids() == ["pg:cancel"]
    # Discord's rule: the first followup after a thinking defer replaces the placeholder.
    assert reply is inter.original and not reply.loading
    assert sim.messages(world.photos) == [reply]

    # A restart: a new bot process knows nothing of the old message, only its persistent view's custom_id.
    await bot.close()
    await sim.wait_until(lambda: not sim.bot_connected, 5)
    await run_bot(make_bot())
    assert sim.gateway.identify_count == 2
    click = await sim.click(world.bob, reply, "pg:cancel")
    assert (await click.wait_response()).type == 7
    edited = await sim.wait_for_message(world.photos, lambda m: m.content.startswith("cancelled"))
    assert edited is reply and edited.content == "cancelled by bob" and edited.components == []
    assert edited.files == {"reversed.bin": photo[::-1]}  # an edit without attachments keeps them
    assert sim.unhandled == []


async def test_429_is_retried_and_the_message_arrives_once(
    world: World, run_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = world.sim
    bot = await run_bot(make_bot())
    rule = sim.set_rate_limit("/channels/*/messages", retry_after=0.2, times=1, method="POST")
    channel = bot.get_channel(world.photos.id)
    assert isinstance(channel, discord.TextChannel)
    with caplog.at_level(logging.WARNING, logger="discord.http"):
        sent = await channel.send("hello after a 429")
    assert rule.hits == 1 and rule.times == 0
    assert "rate limited" in caplog.text
    assert [m.content for m in sim.messages(world.photos)] == ["hello after a 429"]
    assert sent.id == sim.messages(world.photos)[0].id
    statuses = [r.status for r in sim.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert statuses == [429, 200]


async def test_enforce_nonce_duplicate_is_not_posted_twice(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    bot = await run_bot(make_bot())
    channel = bot.get_channel(world.photos.id)
    assert isinstance(channel, discord.TextChannel)
    first = await channel.send("result of order 7", nonce="order-7-delivery")
    again = await channel.send("result of order 7", nonce="order-7-delivery")
    other = await channel.send("result of order 8", nonce="order-8-delivery")
    assert first.id == again.id != other.id
    assert [m.content for m in sim.messages(world.photos)] == ["result of order 7", "result of order 8"]


async def test_wrong_token_is_a_login_failure(world: World, discord_py_at_sim: None) -> None:
    bot = make_bot()
    with pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()
    assert not world.sim.bot_connected
    assert [(r.path, r.status) for r in world.sim.requests] == [("/api/v10/users/@me", 401)]


async def test_unsynced_command_is_refused_by_the_sim(world: World, run_bot: BotFactory) -> None:
    await run_bot(make_bot())
    with pytest.raises(SimError, match="never synced"):
        await world.sim.invoke_command(world.alice, world.photos, "train", {"name": "x"})
    await asyncio.sleep(0)


async def test_bucket_headers_make_discord_py_pace_itself(world: World, run_bot: BotFactory) -> None:
    """A Discord-like bucket (3 edits per 0.3 s per channel): discord.py reads X-RateLimit-* and waits, so all
    edits land, none is lost, and the window is respected."""
    sim = world.sim
    bot = await run_bot(make_bot())
    channel = bot.get_channel(world.photos.id)
    assert isinstance(channel, discord.TextChannel)
    status = await channel.send("progress 0%")
    bucket = sim.add_bucket("/channels/*/messages/*", limit=3, per=0.3, method="PATCH")
    started = asyncio.get_running_loop().time()
    for percent in range(10, 100, 10):
        await status.edit(content=f"progress {percent}%")
    elapsed = asyncio.get_running_loop().time() - started
    record = sim.messages(world.photos)[0]
    assert record.content == "progress 90%" and record.edits == 9
    assert bucket.allowed == 9 and elapsed >= 0.5  # 9 edits at 3 per 0.3 s need at least two waits
    edits = [r for r in sim.requests if r.method == "PATCH"]
    assert {r.status for r in edits} <= {200, 429} and sum(r.status == 200 for r in edits) == 9
