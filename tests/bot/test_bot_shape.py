"""The bot's shape (issue 13 item 9), through the real discord.py client against photogen.discord_sim: one
gate and one count per command in the command tree, buttons that need no cog, periodic rounds that survive a
failure, an HTTP side that needs no bot, and /train's photo options declared from a list."""

from __future__ import annotations

import asyncio
import io
import logging
import urllib.error
import urllib.request
from typing import Any

import discord
import pytest
from discord import app_commands
from PIL import Image
from prometheus_client import REGISTRY
from studio import Studio, answer, order_rows, private_answer

from bot.gate import Access, access_of
from bot.http_side import HttpSide
from bot.periodic import periodic, start, stop
from storage import read_session, standing, transaction


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, "PNG")
    return out.getvalue()


def _required_options(st: Studio, command: app_commands.Command[Any, ..., Any]) -> dict[str, Any]:
    """A value for each required option, by its type: what a member must fill in to send the command."""
    values: dict[str, Any] = {}
    for param in command.parameters:
        if not param.required:
            continue
        if param.choices:
            values[param.name] = param.choices[0].value
        elif param.type is discord.AppCommandOptionType.attachment:
            values[param.name] = ("me.png", _png())
        elif param.type is discord.AppCommandOptionType.integer:
            values[param.name] = 1
        elif param.type is discord.AppCommandOptionType.boolean:
            values[param.name] = True
        elif param.type is discord.AppCommandOptionType.user:
            values[param.name] = st.bob
        elif param.type is discord.AppCommandOptionType.channel:
            values[param.name] = st.channel
        else:
            values[param.name] = "x"
    return values


def _text(message: Any) -> str:
    return f"{message.content} {message.embeds}".lower()


async def test_a_banned_member_is_refused_by_every_member_command_even_a_new_one(studio: Studio) -> None:
    st = studio
    assert st.bot is not None
    st.bot.limiter.limit = 1000  # many commands in a row: the ban, not the rate limit, must answer
    ran: list[int] = []

    # A command added later, by someone who wrote no gate code at all.
    @app_commands.command(name="newthing", description="A command added without any gate code")
    async def newthing(interaction: discord.Interaction) -> None:
        ran.append(interaction.user.id)
        await interaction.response.send_message("ran", ephemeral=True)

    st.bot.tree.add_command(newthing)
    await st.bot.force_sync()
    with transaction(st.b.engine) as s:
        standing.set_ban(s, st.guild.id, st.alice.id, True, "spam")

    member_commands = [
        c
        for c in st.bot.tree.walk_commands()
        if isinstance(c, app_commands.Command) and access_of(c) is Access.MEMBER
    ]
    names = {c.qualified_name for c in member_commands}
    expected = {
        "train",
        "imagine",
        "edit",
        "group",
        "group-requests",
        "orders",
        "cancel",
        "queue",
        "models list",
        "models delete",
        "newthing",
    }
    assert expected <= names
    refused_before = _count("photogen_bot_commands_refused_total", kind="NotAllowed")
    for command in member_commands:
        before = _count("photogen_bot_commands_total", command=command.qualified_name)
        inter = await st.sim.invoke_command(
            st.alice, st.channel, command.qualified_name, _required_options(st, command)
        )
        answer = await private_answer(inter)
        assert "banned" in _text(answer) and "spam" in _text(answer), command.qualified_name
        # Counted once, refused or not, whatever the command's own code does.
        assert _count("photogen_bot_commands_total", command=command.qualified_name) == before + 1
    refused = _count("photogen_bot_commands_refused_total", kind="NotAllowed")
    assert refused == refused_before + len(member_commands)
    assert ran == []
    assert order_rows(st.b) == 0

    # Bob is not banned: the new command runs for him, counted once.
    before = _count("photogen_bot_commands_total", command="newthing")
    inter = await st.sim.invoke_command(st.bob, st.channel, "newthing")
    assert (await inter.wait_response()).content == "ran"
    assert ran == [st.bob.id]
    assert _count("photogen_bot_commands_total", command="newthing") == before + 1


async def test_each_member_command_passes_the_gate_once(studio: Studio) -> None:
    """One count and one rate-limit hit per command: a command that also gated or counted by hand would be
    refused for going too fast with a limit of one, or counted twice."""
    st = studio
    assert st.bot is not None
    st.bot.limiter.limit = 1
    member_commands = [
        c
        for c in st.bot.tree.walk_commands()
        if isinstance(c, app_commands.Command) and access_of(c) is Access.MEMBER
    ]
    for i, command in enumerate(member_commands):
        member = st.sim.add_member(st.guild, f"member{i}")
        before = _count("photogen_bot_commands_total", command=command.qualified_name)
        inter = await st.sim.invoke_command(
            member, st.channel, command.qualified_name, _required_options(st, command)
        )
        reply = await answer(inter, timeout=30)
        assert "slow down" not in _text(reply), command.qualified_name
        assert _count("photogen_bot_commands_total", command=command.qualified_name) == before + 1


async def test_forget_me_stays_open_to_a_banned_member(studio: Studio) -> None:
    st = studio
    with transaction(st.b.engine) as s:
        standing.set_ban(s, st.guild.id, st.alice.id, True, "spam")
    inter = await st.sim.invoke_command(st.alice, st.channel, "forget-me")
    answer = await private_answer(inter)
    assert "delete everything?" in _text(answer) and f"pg:forget:{st.alice.id}" in answer.custom_ids()


async def test_admin_commands_are_gated_as_declared(studio: Studio) -> None:
    st = studio
    assert st.bot is not None
    for command in st.bot.tree.walk_commands():
        if isinstance(command, app_commands.Command) and command.qualified_name.startswith("admin "):
            assert access_of(command) is not Access.MEMBER, command.qualified_name
    # A member who can see /admin (a server owner may expose it) is refused by the gate, in private.
    inter = await st.sim.invoke_command(st.alice, st.channel, "admin pause", check_permissions=False)
    assert "only this server's photogen admins" in _text(await private_answer(inter))
    inter = await st.sim.invoke_command(st.admin, st.channel, "admin pause")
    assert "paused" in _text(await inter.wait_response())
    inter = await st.sim.invoke_command(st.admin, st.channel, "owner ban", {"member": st.bob})
    assert "only the bot's owners" in _text(await private_answer(inter))


async def test_buttons_work_without_looking_up_a_cog(studio: Studio) -> None:
    """The Cancel button calls the service directly: it works with the /cancel command's cog gone."""
    st = studio
    assert st.bot is not None
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "portrait", "count": 2})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    order_id = (await asyncio.to_thread(st.agent.take_render)).order_id
    status = next(m for m in st.sim.messages(st.channel) if f"pg:cancel:{order_id}" in m.custom_ids())
    await st.bot.remove_cog("Orders")
    await st.bot.remove_cog("Imagine")
    before = _count("photogen_bot_commands_total", command="button:cancel")
    click = await st.sim.click(st.alice, status, f"pg:cancel:{order_id}")
    assert "2 credit(s) refunded" in (await click.wait_response()).content
    assert _count("photogen_bot_commands_total", command="button:cancel") == before + 1


class _Flaky:
    def __init__(self) -> None:
        self.rounds = 0

    @periodic("flaky round")
    async def tick(self) -> None:
        self.rounds += 1
        if self.rounds == 1:
            raise RuntimeError("the database was locked")


async def test_a_failing_round_is_logged_and_the_loop_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    # discord.ext.tasks alone would stop the loop for good on this RuntimeError.
    caplog.set_level(logging.ERROR, logger="bot.periodic")
    flaky = _Flaky()
    ready = asyncio.Event()
    start(flaky.tick, seconds=0.01, after=ready.wait)
    await asyncio.sleep(0.05)
    assert flaky.rounds == 0  # waits for `after`
    ready.set()
    for _ in range(200):
        if flaky.rounds >= 3:
            break
        await asyncio.sleep(0.01)
    await stop(flaky.tick)
    assert flaky.rounds >= 3 and not flaky.tick.is_running()
    assert "flaky round failed" in caplog.text and "the database was locked" in caplog.text


async def test_the_periodic_cog_samples_for_the_dashboard_and_metrics(studio: Studio) -> None:
    from storage import metrics, order_store

    st = studio

    def sampled() -> bool:
        with read_session(st.b.engine) as s:
            return bool(metrics.latest(s, "fleet_agents", since=0))

    await st.sim.wait_until(sampled, 10)  # the first round runs once the bot is ready
    with transaction(st.b.engine) as s:
        order_store.create_order(s, user_id=st.alice.id, kind="render")
    cog = st.bot.get_cog("Periodic")  # type: ignore[union-attr]
    await cog.sample()  # type: ignore[union-attr]
    # The scrape copy was refreshed by the round, off the event loop: the new order is in it.
    assert _count("photogen_orders", kind="render", status="created") == 1
    assert cog.probe_lag.is_running()  # type: ignore[union-attr]


async def test_the_http_side_takes_only_what_it_serves(studio: Studio) -> None:
    st = studio
    ready = False
    settings = st.settings.model_copy(update={"bot_http_port": 0})
    side = HttpSide(settings, engine=st.b.engine, blobs=st.b.blobs, discord_ready=lambda: ready)
    await side.start()
    try:
        base = f"http://127.0.0.1:{side.port}"

        def get(url: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        assert (await asyncio.to_thread(get, f"{base}/healthz"))[0] == 503
        ready = True
        assert (await asyncio.to_thread(get, f"{base}/healthz"))[0] == 200
        st.b.blobs.put("users/1/renders/j/0.png", b"\x89PNG fake")
        url = st.b.blobs.url("users/1/renders/j/0.png", expires_s=120).replace(
            f"http://127.0.0.1:{st.settings.bot_http_port}", base
        )
        assert await asyncio.to_thread(get, url) == (200, b"\x89PNG fake")
    finally:
        await side.stop()


async def test_train_declares_twenty_photo_options_in_order(studio: Studio) -> None:
    st = studio
    train = st.sim.find_command(st.channel, "train")
    assert train is not None
    photos = [o for o in train["options"] if o["name"].startswith("photo")]
    assert [o["name"] for o in photos] == [f"photo{i}" for i in range(1, 21)]
    assert all(o["type"] == 11 for o in photos)  # attachment
    assert [bool(o.get("required")) for o in photos] == [True] + [False] * 19
    assert photos[0]["description"].startswith("A photo of you")
    assert all(o["description"] == "Another photo (or a .zip)" for o in photos[1:])
    assert [o["name"] for o in train["options"][:3]] == ["name", "class_word", "photo1"]
