"""Interaction details a bot relies on: subcommand groups, resolved options, autocomplete, ephemeral replies,
edits of the original, modals, Discord's 3-second deadline, double acknowledgement and expired tokens."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image
from sim_world import BotFactory, World

from photogen.discord_sim import DiscordSim, SimError, SimTimeout


class NameModal(discord.ui.Modal, title="Rename"):
    new_name: discord.ui.TextInput[NameModal] = discord.ui.TextInput(label="New name", custom_id="new_name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"renamed to {self.new_name.value}", ephemeral=True)


def studio_bot(delay: float = 0.0) -> commands.Bot:
    bot = commands.Bot(
        command_prefix=commands.when_mentioned, intents=discord.Intents.default(), guild_ready_timeout=0.05
    )
    admin = app_commands.Group(
        name="admin", description="Admin commands", default_permissions=discord.Permissions(manage_guild=True)
    )
    credits = app_commands.Group(name="credits", description="Credits", parent=admin)

    @credits.command(name="grant", description="Grant credits")
    async def grant(interaction: discord.Interaction, member: discord.Member, amount: int) -> None:
        await interaction.response.send_message(
            f"{interaction.user.name} granted {amount} to {member.name} ({member.id})", ephemeral=True
        )

    bot.tree.add_command(admin)

    @bot.tree.command(name="imagine", description="Render a picture")
    async def imagine(interaction: discord.Interaction, prompt: str, model: str) -> None:
        await asyncio.sleep(delay)
        await interaction.response.send_message(f"rendering {prompt!r} with {model}")
        await interaction.edit_original_response(content=f"done: {prompt!r} with {model}")

    @imagine.autocomplete("model")
    async def models(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        mine = [f"{interaction.user.name}-portrait", f"{interaction.user.name}-studio", "other"]
        return [app_commands.Choice(name=m, value=m) for m in mine if m.startswith(current)]

    @bot.tree.command(name="rename", description="Rename a model")
    async def rename(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(NameModal())

    @bot.tree.command(name="twice", description="Acknowledge twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        try:
            await interaction.followup.send("first")
            # Bypass discord.py's own guard to see what Discord (the sim) says to a second callback.
            await interaction._state.http.request(
                discord.http.Route(
                    "POST", "/interactions/{i}/{t}/callback", i=interaction.id, t=interaction.token
                ),
                json={"type": 4, "data": {"content": "second"}},
            )
        except discord.HTTPException as exc:
            await interaction.followup.send(f"refused: {exc.code}")

    return bot


async def synced(run_bot: BotFactory, bot: commands.Bot) -> commands.Bot:
    await run_bot(bot)
    await bot.tree.sync()
    return bot


async def test_subcommand_group_with_resolved_member_and_permissions(
    world: World, run_bot: BotFactory
) -> None:
    sim = world.sim
    await synced(run_bot, studio_bot())
    with pytest.raises(SimError, match="hidden from alice"):
        await sim.invoke_command(
            world.alice, world.photos, "admin credits grant", {"member": world.bob, "amount": 5}
        )
    inter = await sim.invoke_command(
        world.bob, world.photos, "admin credits grant", {"member": world.alice, "amount": 5}
    )
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral
    assert response.content == f"bob granted 5 to alice ({world.alice.id})"
    assert response.message is not None and response.message.ephemeral
    # A guild may override default permissions; the bot must then check again in code.
    overridden = await sim.invoke_command(
        world.alice,
        world.photos,
        "admin credits grant",
        {"member": world.bob, "amount": 1},
        check_permissions=False,
    )
    assert (await overridden.wait_response()).content.startswith("alice granted 1")
    with pytest.raises(SimError, match="needs a subcommand"):
        await sim.invoke_command(world.bob, world.photos, "admin credits", {})
    with pytest.raises(SimError, match="no option 'amout'"):
        await sim.invoke_command(
            world.bob, world.photos, "admin credits grant", {"member": world.alice, "amout": 1}
        )


async def test_autocomplete_and_edit_of_the_original(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    await synced(run_bot, studio_bot())
    choices = await sim.autocomplete(
        world.alice, world.photos, "imagine", {"prompt": "x", "model": "alice-p"}, focused="model"
    )
    assert choices == [{"name": "alice-portrait", "value": "alice-portrait"}]
    inter = await sim.invoke_command(
        world.alice, world.photos, "imagine", {"prompt": "@everyone at dusk", "model": "alice-studio"}
    )
    assert (await inter.wait_response()).content == "rendering '@everyone at dusk' with alice-studio"
    final = await inter.wait_original(lambda m: m.content.startswith("done"))
    assert final.content == "done: '@everyone at dusk' with alice-studio" and final.edits == 1
    assert [m.content for m in sim.messages(world.photos)] == [final.content]


async def test_modal_round_trip(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    await synced(run_bot, studio_bot())
    inter = await sim.invoke_command(world.alice, world.photos, "rename")
    response = await inter.wait_response()
    assert response.type == 9 and response.data["title"] == "Rename"
    submitted = await sim.submit_modal(world.alice, inter, {"new_name": "studio look"})
    answer = await submitted.wait_response()
    assert answer.content == "renamed to studio look" and answer.ephemeral


async def test_second_acknowledgement_is_refused(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    await synced(run_bot, studio_bot())
    inter = await sim.invoke_command(world.alice, world.photos, "twice")
    assert (await inter.wait_response()).deferred
    assert (await inter.wait_followup()).content == "first"
    assert (await inter.wait_followup()).content == "refused: 40060"


async def test_late_answer_is_refused_like_discord(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    sim.interaction_deadline = 0.2  # Discord's is 3 s; shortened to keep the test fast
    bot = await synced(run_bot, studio_bot(delay=0.4))
    failures: list[BaseException] = []
    bot.tree.on_error = lambda interaction, error: failures.append(error)  # type: ignore[assignment,method-assign,misc,return-value]
    inter = await sim.invoke_command(world.alice, world.photos, "imagine", {"prompt": "p", "model": "m"})
    with pytest.raises(SimTimeout, match="did not answer"):
        await inter.wait_response()
    await sim.wait_until(lambda: sim.late_callbacks == 1, 5)
    await sim.wait_until(lambda: bool(failures), 5)
    assert isinstance(failures[0].__cause__ or failures[0], discord.NotFound)
    assert inter.response is None and sim.messages(world.photos) == []


async def test_expired_token_refuses_webhook_calls(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    await synced(run_bot, studio_bot())
    first = await sim.invoke_command(world.alice, world.photos, "imagine", {"prompt": "p", "model": "m"})
    second = await sim.invoke_command(world.alice, world.photos, "imagine", {"prompt": "q", "model": "m"})
    for inter in (first, second):
        await inter.wait_original(lambda m: m.content.startswith("done"))
    first.expire()  # one token dies
    async with aiohttp.ClientSession() as session:

        async def patch(token: str) -> tuple[int, int | None]:
            url = f"{sim.api_base}/webhooks/{sim.application_id}/{token}/messages/@original"
            async with session.patch(url, json={"content": "too late"}) as resp:
                return resp.status, (await resp.json()).get("code")

        assert await patch(first.token) == (401, 50027)
        assert (await patch(second.token))[0] == 200
        original = f"{sim.api_base}/webhooks/{sim.application_id}/{second.token}/messages/@original"
        async with session.get(original) as resp:
            assert (await resp.json())["content"] == "too late"
        sim.interaction_token_ttl = 0.0  # every token older than this is dead (Discord: 15 minutes)
        assert await patch(second.token) == (401, 50027)
    assert [m.content for m in sim.messages(world.photos)] == ["done: 'p' with m", "too late"]


async def test_sim_without_bot_refuses_interactions() -> None:
    async with DiscordSim() as sim:
        guild = sim.add_guild("g")
        channel = sim.add_channel(guild, "c")
        member = sim.add_member(guild, "m")
        with pytest.raises(SimError, match="no bot is connected"):
            await sim.invoke_command(member, channel, "train")


async def test_attachment_options_carry_what_discord_reports(world: World, run_bot: BotFactory) -> None:
    """Size, content type (from the name, as Discord does) and image dimensions read from the header only."""
    sim = world.sim
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
    seen: list[tuple[str, int, str | None, int | None, int | None]] = []

    @bot.tree.command(name="check", description="Look at photos")
    async def check(interaction: discord.Interaction, a: discord.Attachment, b: discord.Attachment) -> None:
        seen.extend((x.filename, x.size, x.content_type, x.width, x.height) for x in (a, b))
        await interaction.response.send_message("ok", ephemeral=True)

    await synced(run_bot, bot)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(buf, "JPEG")
    # A PNG header claiming 50,000 × 50,000 with no pixel data: must not be decoded.
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    inter = await sim.invoke_command(
        world.alice, world.photos, "check", attachments=[("me.jpg", buf.getvalue()), ("big.png", bomb)]
    )
    await inter.wait_response()
    assert seen[0] == ("me.jpg", len(buf.getvalue()), "image/jpeg", 64, 48)
    assert seen[1][:3] == ("big.png", len(bomb), "image/png") and seen[1][3:] == (None, None)
