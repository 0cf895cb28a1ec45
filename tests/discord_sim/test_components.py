"""Component interactions: a deferred update then an edit of the clicked message, a message response carrying a
file (multipart callback), select menus, deleting the original, and a 429 on the interaction webhook."""

from __future__ import annotations

import io

import discord
import pytest
from discord.ext import commands
from sim_world import BotFactory, World

from photogen.discord_sim import SimError


class ResultView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="U1", custom_id="img:u:1")
    async def upscale(self, interaction: discord.Interaction, button: discord.ui.Button[ResultView]) -> None:
        await interaction.response.defer()  # type 6: no visible change yet
        await interaction.edit_original_response(content="upscaling 1…")  # edits the clicked message

    @discord.ui.button(label="V1", custom_id="img:v:1")
    async def vary(self, interaction: discord.Interaction, button: discord.ui.Button[ResultView]) -> None:
        await interaction.response.send_message(
            "variation", file=discord.File(io.BytesIO(b"PNGDATA"), "v1.png")
        )

    @discord.ui.button(label="Delete", custom_id="img:del")
    async def delete(self, interaction: discord.Interaction, button: discord.ui.Button[ResultView]) -> None:
        await interaction.response.defer()
        await interaction.delete_original_response()

    @discord.ui.select(
        custom_id="img:style", options=[discord.SelectOption(label=s) for s in ("film", "studio")]
    )
    async def style(self, interaction: discord.Interaction, select: discord.ui.Select[ResultView]) -> None:
        await interaction.response.edit_message(content=f"style: {select.values[0]}")


def view_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)

    async def setup_hook() -> None:
        bot.add_view(ResultView())

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


async def post_result(bot: commands.Bot, world: World) -> discord.Message:
    channel = bot.get_channel(world.photos.id)
    assert isinstance(channel, discord.TextChannel)
    return await channel.send("your picture", view=ResultView())


async def test_deferred_update_then_edit_of_the_clicked_message(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    bot = await run_bot(view_bot())
    await post_result(bot, world)
    result = sim.messages(world.photos)[0]
    assert result.custom_ids() == ["img:u:1", "img:v:1", "img:del", "img:style"]
    click = await sim.click(world.alice, result, "img:u:1")
    assert (await click.wait_response()).type == 6
    edited = await click.wait_original(lambda m: m.content == "upscaling 1…")
    assert edited is result and result.edits == 1 and len(sim.messages(world.photos)) == 1

    picked = await sim.click(world.alice, result, "img:style", values=["studio"])
    assert (await picked.wait_response()).type == 7
    assert result.content == "style: studio"
    with pytest.raises(SimError, match="no component 'img:zzz'"):
        await sim.click(world.alice, result, "img:zzz")


async def test_message_response_with_a_file_and_a_429_on_the_webhook(
    world: World, run_bot: BotFactory
) -> None:
    sim = world.sim
    bot = await run_bot(view_bot())
    await post_result(bot, world)
    result = sim.messages(world.photos)[0]
    rule = sim.set_rate_limit("/interactions/*/*/callback", retry_after=0.05, times=1)
    click = await sim.click(world.alice, result, "img:v:1")
    response = await click.wait_response()
    assert rule.hits == 1 and response.type == 4
    assert response.message is not None and response.message.files == {"v1.png": b"PNGDATA"}
    assert [m.content for m in sim.messages(world.photos)] == ["your picture", "variation"]


async def test_delete_original_removes_the_clicked_message(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    bot = await run_bot(view_bot())
    await post_result(bot, world)
    result = sim.messages(world.photos)[0]
    click = await sim.click(world.bob, result, "img:del")
    await click.wait_response()
    await sim.wait_until(lambda: result.deleted, 5)
    assert sim.messages(world.photos) == []
    with pytest.raises(SimError, match="does not exist"):
        await sim.click(world.bob, result, "img:u:1")
