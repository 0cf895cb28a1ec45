"""Time to first picture: from an accepted /train to the first headshot posted, end to end, and where it went.

    python bench/first_picture.py --quick     # one /train on the tiny model (under 2 minutes here)
    python bench/first_picture.py             # three /train orders in a row, medians

The product as `photogen demo` runs it: photogen.discord_sim (the project's Discord-compatible server), the real
bot connected to it, one GPU agent in its own process (`python -m gpu_agent`), embedded SQLite queues and a local
blob store, the tiny random model with the demo's settings. A member runs /train with the demo photos; the clock
starts when the bot queues the training (the moment it accepts it; its reply follows) and stops
when the "trained and ready" post with the
first headshot appears in the channel.

The breakdown is what the agent records anyway (its /metrics, photogen_agent_*): queue wait, the training job's
phases (photos, model load, class images, caching, LoRA set-up, training steps, checkpoints, previews, eval,
save: the trainer's own clock), upload, first renders; "agent_other" is the rest of the agent's job time
(its events and bookkeeping) and "delivery" the rest of the total (the done event reaching the bot, the bot
posting).

Goal: everything that is not training steps or rendering (first renders and class images, both the base
model's denoising) at most 10 % of the total. The last line is one JSON object with the figures, the goal and
goal_met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from photogen.demo import DEMO_PHOTOS, demo_settings
from storage.settings import Settings, load_settings

GOAL_OVERHEAD_SHARE = 0.10
# --quick: the demo's tiny-model settings made smaller (the full run keeps photogen demo's: 40 steps at 128 px)
QUICK = dict(train_steps=20, train_resolution=64, train_class_images=2, render_steps=8, render_size=64)
WORK = ("steps", "class_images", "first_renders")  # what the goal counts as training and rendering
PHASES = (
    "queue_wait",
    "photos",
    "model_load",
    "class_images",
    "caching",
    "setup",
    "steps",
    "checkpoints",
    "previews",
    "eval",
    "save",
    "upload",
    "first_renders",
    "agent_other",
    "delivery",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_metrics(port: int) -> dict[str, float]:
    """Sums of the agent's training histograms: {phase: seconds} plus queue_wait and job."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_sum") or sample.labels.get("kind") != "train":
                continue
            if sample.name == "photogen_agent_phase_seconds_sum":
                out[sample.labels["phase"]] = sample.value
            elif sample.name == "photogen_agent_queue_wait_seconds_sum":
                out["queue_wait"] = sample.value
            elif sample.name == "photogen_agent_job_duration_seconds_sum":
                out["job"] = sample.value
    return out


def bench_settings(data: Path, metrics_port: int, overrides: dict[str, object]) -> Settings:
    settings = demo_settings(load_settings(), data, "tiny-sd")
    return settings.model_copy(update={"agent_metrics_port": metrics_port, "device": "cpu", **overrides})


async def _orders(settings: Settings, orders: int, log_path: Path) -> list[dict[str, float]]:
    from bot import start_bot
    from photogen.discord_sim import DiscordSim

    sim = DiscordSim()
    await sim.start()
    guild = sim.add_guild("First picture")
    channel = sim.add_channel(guild, "studio")
    members = [sim.add_member(guild, f"member{n}") for n in range(orders)]
    settings = settings.model_copy(
        update=dict(
            discord_api_base=sim.api_base,
            discord_gateway_url=sim.gateway_url,
            discord_token=SecretStr(sim.token),
        )
    )
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as agent_log:  # noqa: ASYNC230 - a moment, once
        agent = subprocess.Popen(  # noqa: ASYNC220 - stopped synchronously in the finally block
            [sys.executable, "-m", "gpu_agent"], env=env, stdout=agent_log, stderr=subprocess.STDOUT
        )
    bot = None
    runs: list[dict[str, float]] = []
    try:
        bot = await start_bot(settings, guild_ready_timeout=0.05)
        await _agent_up(settings.agent_metrics_port, agent, log_path)
        photos = [(p.name, p.read_bytes()) for p in sorted(DEMO_PHOTOS.glob("*.jpg"))]
        for n, member in enumerate(members):
            before = agent_metrics(settings.agent_metrics_port)
            seen = {m.id for m in sim.messages(channel)}
            inter = await sim.invoke_command(
                member, channel, "train", {"name": f"m{n}", "class_word": "woman"}, attachments=photos
            )
            await inter.wait_response()
            status = await inter.wait_original(lambda m: not m.loading, timeout=120)
            # The bot queues the job, then says "accepted": the clock starts at whichever came first.
            accepted = min(time.time(), _queued_at(settings.queue_url) or time.time())
            print(f"order {n + 1}/{orders}: /train accepted", file=sys.stderr, flush=True)
            title = status.embeds[0].get("title", "") if status.embeds else status.content
            if "accepted" not in title.lower():
                raise SystemExit(f"first_picture: the /train was refused: {status.embeds or status.content}")
            await sim.wait_for_message(
                channel,
                # this order's post: the earlier orders' "trained and ready" posts are in the channel too
                lambda m: m.id not in seen and "trained and ready" in m.content and bool(m.attachments),  # noqa: B023
                timeout=600,
            )
            total = time.time() - accepted
            print(
                f"order {n + 1}/{orders}: first headshot posted after {total:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            after = agent_metrics(settings.agent_metrics_port)
            runs.append(breakdown(total, {k: after[k] - before.get(k, 0.0) for k in after}))
            print(
                json.dumps({"order": n + 1, **{k: round(v, 3) for k, v in runs[-1].items()}}), file=sys.stderr
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
    return runs


async def _agent_up(port: int, agent: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"first_picture: the agent exited (its log: {log_path})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:  # noqa: ASYNC210
                # A serving agent has its engine imported: a member's /train meets an agent that is up.
                if not json.loads(reply.read()).get("engine_preloading"):
                    return
                await asyncio.sleep(0.5)
        except OSError:
            await asyncio.sleep(0.2)
    raise SystemExit("first_picture: the agent was not up with its engine imported in 300 s")


def _queued_at(queue_url: str) -> float | None:
    """When the newest training job was queued (the embedded queue's own sent_at, wall clock)."""
    path = queue_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT max(sent_at) FROM messages WHERE queue LIKE '%train%'").fetchone()
    return float(row[0]) if row and row[0] is not None else None


def breakdown(total: float, agent: dict[str, float]) -> dict[str, float]:
    """{phase: seconds} summing to ``total``: the agent's phases, the rest of its job, and delivery."""
    phases = {p: agent.get(p, 0.0) for p in PHASES if p not in ("agent_other", "delivery")}
    inside_job = sum(v for p, v in phases.items() if p != "queue_wait")
    phases["agent_other"] = max(0.0, agent.get("job", 0.0) - inside_job)
    phases["delivery"] = max(0.0, total - phases["queue_wait"] - agent.get("job", 0.0))
    return {"total": total, **phases}


def summarise(runs: list[dict[str, float]]) -> dict[str, object]:
    median = {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
    total = median["total"]
    overhead = {p: v for p, v in median.items() if p != "total" and p not in WORK}
    share = sum(overhead.values()) / total if total else 1.0
    above = sorted(
        ((p, v / total) for p, v in overhead.items() if total and v / total >= 0.01), key=lambda x: -x[1]
    )
    return {
        "total_s": total,
        "breakdown_s": {p: median[p] for p in PHASES},
        "share": {p: round(median[p] / total, 4) if total else 0.0 for p in PHASES},
        "overhead_share": round(share, 4),
        "largest_overheads": [{"phase": p, "share": round(s, 4)} for p, s in above[:5]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one /train (under 2 minutes here)")
    parser.add_argument("--keep", type=Path, help="copy the agent's log here")
    parser.add_argument(
        "--orders", type=int, default=0, help="/train orders in a row (default 3; 1 with --quick)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # timeout(1)'s SIGTERM unwinds like Ctrl-C: the finally blocks stop the agent process and the bot.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    orders = args.orders or (1 if args.quick else 3)
    from storage import migrate

    with tempfile.TemporaryDirectory(prefix="bench-first-picture-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        settings = bench_settings(data, _free_port(), QUICK if args.quick else {})
        migrate(settings.database_url)
        try:
            runs = asyncio.run(_orders(settings, orders, Path(tmp) / "agent.log"))
        finally:
            if args.keep:
                shutil.copy(Path(tmp) / "agent.log", args.keep)
    summary = summarise(runs)
    print(
        json.dumps(
            {
                "bench": "first_picture",
                "orders": orders,
                "model": "tiny-sd",
                "train_steps": settings.train_steps,
                "train_resolution": settings.train_resolution,
                "class_images": settings.train_class_images,
                "render_steps": settings.render_steps,
                "render_size": settings.render_size,
                **summary,
                "work_phases": list(WORK),
                "goal": {"overhead_share_max": GOAL_OVERHEAD_SHARE},
                "goal_met": summary["overhead_share"] <= GOAL_OVERHEAD_SHARE,
                "machine": f"{os.cpu_count()}-core CPU, no GPU (shared with other work)",
            }
        )
    )


if __name__ == "__main__":
    main()
