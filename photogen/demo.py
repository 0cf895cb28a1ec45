"""`photogen demo`: the whole product on one machine, offline, in a few minutes.

A local Discord-compatible server (photogen.discord_sim), the real bot connected to it over sockets, and one GPU
agent in its own process, all on the embedded backends in DIR/data. A scripted member runs /train with the demo
photos, then /imagine with style presets and clicks U1 and V1. The report (DIR/report.html) shows the inputs and
outputs, the order timeline, and every message the bot posted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from photogen.report import Report, write_report
from storage.settings import Settings

if TYPE_CHECKING:
    from photogen.discord_sim import DiscordSim
    from photogen.discord_sim.models import SimChannel, SimMessage

DEMO_PHOTOS = Path(__file__).resolve().parent / "assets" / "demo_photos"
MARKER = ".photogen-demo"
MANAGE_GUILD = 1 << 5

# The tiny test model works at 64 px and trains in seconds; a real base model gets the product's defaults.
TINY_OVERRIDES = dict(
    train_steps=40,
    train_resolution=128,
    train_class_images=4,
    render_steps=8,
    render_size=128,
    checkpoint_every_steps=20,
    edit_model="tiny-ip2p",  # the Edit button and /edit on the tiny random InstructPix2Pix
)


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    rows: list[tuple[float, str]] = field(default_factory=list)

    def add(self, what: str) -> None:
        at = time.monotonic() - self.started
        self.rows.append((at, what))
        print(f"[{at:6.1f}s] {what}", flush=True)


def _fresh_data_dir(out: Path) -> Path:
    data = out / "data"
    if data.exists():
        if not (data / MARKER).exists():
            raise SystemExit(
                f"photogen demo: {data} exists and was not made by the demo; choose another --out"
            )
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / MARKER).write_text("made by photogen demo; deleted by the next run\n")
    return data


def demo_settings(base: Settings, data: Path, base_model: str | None) -> Settings:
    model = base_model or "tiny-sd"
    update: dict[str, object] = dict(
        database_url=f"sqlite:///{data / 'photogen.db'}",
        queue_url=f"sqlite:///{data / 'queue.db'}",
        blob_url=f"file://{data / 'blobs'}",
        base_model=model,
        model_cache_dir=str(data.parent / "models"),  # kept between runs: the tiny model is built once
        agent_work_dir=str(data / "agent"),
        bot_http_port=0,
        agent_metrics_port=0,
        agent_poll_wait_s=1.0,
        agent_progress_every_s=1.0,
        bot_event_wait_s=0.5,
        starting_credits=100,
    )
    if model in ("tiny-sd", "tiny-sdxl"):
        update.update(TINY_OVERRIDES)
    return base.model_copy(update=update)


SCENARIO = [
    "A local Discord-compatible server starts with one server, a #studio channel, a member (eileen) and an admin.",
    "The real bot connects to it; one GPU agent runs in its own process; queues and files are local.",
    "eileen runs /train with {photos} photos of one person; the bot checks them and queues a training.",
    "The agent trains her model; the bot edits its progress message until it reports the model ready.",
    "eileen runs /imagine three times (two style presets, and a prompt that tries to @everyone);",
    "then clicks U1 (upscale) and V1 (variations) under the first result.",
    "This report was captured once every order was final and the bot had stopped editing its messages.",
]


async def _training_bar(settings: Settings, order_id: str, seen: list[tuple[int, int]] | None = None) -> None:
    """A terminal progress bar for the training, read from the order store as the bot records progress events;
    each new (step, total) is appended to ``seen``."""
    from tqdm import tqdm

    from storage import lifecycle, open_engine

    engine = open_engine(settings.database_url)
    bar = None
    try:
        while True:
            order = lifecycle.get_order(engine, order_id)
            step, total = (order.step or 0, order.total or 0) if order else (0, 0)
            if seen is not None and total and (not seen or seen[-1] != (step, total)):
                seen.append((step, total))
            if total and bar is None:
                bar = tqdm(
                    total=total,
                    desc="training (tiny test model)" if "tiny" in settings.base_model else "training",
                    unit="step",
                    leave=False,
                )
            if bar is not None:
                bar.update(max(0, step - bar.n))
            await asyncio.sleep(0.5)
    finally:
        if bar is not None:
            bar.close()
        engine.dispose()


async def _scenario(settings: Settings, out: Path, timeline: Timeline) -> Report:
    from bot import start_bot
    from photogen.discord_sim import DiscordSim

    sim = DiscordSim()
    await sim.start()
    guild = sim.add_guild("Photogen Demo")
    admin_role = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    channel = sim.add_channel(guild, "studio")
    eileen = sim.add_member(guild, "eileen")
    sim.add_member(guild, "ada", roles=[admin_role])
    settings = settings.model_copy(
        update=dict(
            discord_api_base=sim.api_base,
            discord_gateway_url=sim.gateway_url,
            discord_token=SecretStr(sim.token),
        )
    )
    timeline.add(f"local Discord-compatible server on {sim.base_url}")

    log_path = out / "agent.log"
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    # Starting the child blocks for a moment only; a plain Popen lets the finally block below stop it synchronously.
    with open(log_path, "wb") as agent_log:  # noqa: ASYNC230 - see above
        agent = subprocess.Popen(  # noqa: ASYNC220 - see above
            [sys.executable, "-m", "gpu_agent"], env=env, stdout=agent_log, stderr=subprocess.STDOUT
        )
    bot = None
    try:
        bot = await start_bot(settings, guild_ready_timeout=0.05)
        timeline.add(f"bot connected as {bot.user}; agent pid {agent.pid} (log: {log_path.name})")

        photos = sorted(DEMO_PHOTOS.glob("*.jpg"))
        inter = await sim.invoke_command(
            eileen,
            channel,
            "train",
            {"name": "eileen", "class_word": "woman"},
            attachments=[(p.name, p.read_bytes()) for p in photos],
        )
        await inter.wait_response()
        status = await inter.wait_original(lambda m: not m.loading, timeout=120)
        title = status.embeds[0].get("title", "") if status.embeds else status.content
        timeline.add(f"/train with {len(photos)} photos → {title}")
        if "accepted" not in title.lower():
            raise SystemExit(
                f"photogen demo: the demo photos were refused: {status.embeds or status.content}"
            )

        order_id = next(c for c in status.custom_ids() if c.startswith("pg:cancel:")).split(":")[2]
        progress: list[tuple[int, int]] = []
        bar = asyncio.create_task(_training_bar(settings, order_id, progress))
        try:
            ready = await sim.wait_for_message(
                channel, lambda m: "trained and ready" in m.content, timeout=900
            )
            await _settled(sim, channel, settings, order_ids=[order_id])
            await asyncio.sleep(0.6)  # one more look at the store
        finally:
            bar.cancel()
        captions = {status.id: f"/train with {len(photos)} photos (model “eileen”)"}
        timeline.add("training done: " + ready.content.split(">", 1)[-1].strip())

        choices = await sim.autocomplete(eileen, channel, "imagine", {"prompt": "x", "model": ""}, "model")
        model_id = choices[0]["value"]
        results = []
        for prompt, style in [
            ("a photo of {subject}", "headshot"),
            ("a photo of {subject}", "eiffel-tower"),
            ("portrait of {subject} at dusk @everyone", None),
        ]:
            options: dict[str, object] = {"prompt": prompt, "model": model_id, "count": 2, "seed": 7}
            if style:
                options["style"] = style
            before = {m.id for m in sim.messages(channel)}
            inter = await sim.invoke_command(eileen, channel, "imagine", options)
            await inter.wait_response()
            result = await sim.wait_for_message(
                channel,
                # awaited within this iteration: `before` is this iteration's
                lambda m: m.id not in before and any(c.startswith("pg:up:") for c in m.custom_ids()),  # noqa: B023
                timeout=600,
            )
            results.append(result)
            pictures = sum(c.startswith("pg:up:") for c in result.custom_ids())
            words = prompt.replace("{subject}", "you")  # as the member would say it
            captions[result.id] = f"/imagine “{words}”" + (f" · style {style}" if style else "")
            timeline.add(
                f"/imagine {prompt!r} style={style or '-'} → {pictures} pictures in {len(result.files)} file(s)"
            )

        first = results[0]
        for action in ("up", "var"):
            custom_id = next(
                c for c in first.custom_ids() if c.startswith(f"pg:{action}:") and c.endswith(":0")
            )
            before = {m.id for m in sim.messages(channel)}
            await sim.click(eileen, first, custom_id)
            done = await sim.wait_for_message(channel, _result_after(before), timeout=600)
            label = "U1 (upscale)" if action == "up" else "V1 (variations)"
            await _settled(sim, channel, settings)  # the click's order is final: what it brought is all here
            for m in sim.messages(channel):  # every picture the bot posted since the click answers it
                if m.id not in before and m.author.bot and m.attachments:
                    captions.setdefault(m.id, f"{label} of {captions[first.id]}")
            timeline.add(f"clicked {label} → {len(done.files)} image(s)")

        await _settled(sim, channel, settings)
        timeline.add("every order final and every message settled: report captured")
        scenario = [line.format(photos=len(photos)) for line in SCENARIO]
        return Report.collect(
            sim,
            channel,
            settings,
            timeline.rows,
            photos,
            scenario=scenario,
            captions=captions,
            progress=progress,
        )
    finally:
        if bot is not None:
            await bot.close()
        agent.terminate()
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
        await sim.stop()


def _result_after(before: set[int]) -> Callable[[SimMessage], bool]:
    """A result post the bot made after ``before`` (its buttons), not a status message's passing preview."""

    def posted(m: SimMessage) -> bool:
        return (
            m.id not in before
            and m.author.bot
            and bool(m.attachments)
            and any(c.startswith(("pg:del:", "pg:rr:")) for c in m.custom_ids())
        )

    return posted


async def _settled(
    sim: DiscordSim,
    channel: SimChannel,
    settings: Settings,
    *,
    order_ids: list[str] | None = None,
    quiet_s: float = 8.0,
    timeout: float = 300,
) -> None:
    """Until the orders (``order_ids``, else all) are final and the bot has not posted or edited a message in
    ``quiet_s`` (the bot spaces its status edits a few seconds apart): the report shows what a member sees at the
    end, not a snapshot mid-edit."""
    from sqlmodel import select

    from storage import FINAL_STATUSES, Order, open_engine, read_session

    engine = open_engine(settings.database_url)
    deadline = time.monotonic() + timeout
    last, quiet_since = None, time.monotonic()
    try:
        while time.monotonic() < deadline:
            with read_session(engine) as s:
                rows = s.exec(select(Order)).all()
            final = all(o.status in FINAL_STATUSES for o in rows if order_ids is None or o.id in order_ids)
            look = [(m.id, m.edits, len(m.attachments)) for m in sim.messages(channel)]
            if look != last:
                last, quiet_since = look, time.monotonic()
            if final and time.monotonic() - quiet_since >= quiet_s:
                return
            await asyncio.sleep(0.25)
    finally:
        engine.dispose()
    raise SystemExit("photogen demo: the orders did not finish in time; see agent.log")


def run_demo(out_dir: str, base_model: str | None, settings: Settings) -> int:
    from storage import migrate

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = _fresh_data_dir(out)
    settings = demo_settings(settings, data, base_model)
    timeline = Timeline()
    if settings.base_model in ("tiny-sd", "tiny-sdxl"):
        print(
            "photogen demo: using the built-in TINY RANDOM TEST MODEL — it draws noise, not people. "
            "Pass --base-model (a hub id or local path) on a GPU machine for real pictures.",
            flush=True,
        )
    migrate(settings.database_url)
    report = asyncio.run(_scenario(settings, out, timeline))
    path = write_report(report, out)
    total = time.monotonic() - timeline.started
    print(
        f"photogen demo: done in {total:.0f}s — {len(report.messages)} bot messages, "
        f"{len(report.outputs)} images; report: {path}",
        flush=True,
    )
    return 0
