"""Chaos benchmark: mixed orders from several members while agents die, spot notices arrive, the bot restarts
and S3/SQS answer a share of requests with 5xx/throttling errors.

    python bench/chaos.py [--quick] [--orders 50] [--members 5] [--fault-share 0.05] [--seed 7]

The whole system across processes: the Discord-compatible sim in this process (members use it as Discord
clients would), one `photogen bot` and two `photogen agent` processes on SQS + S3 (moto's server on 127.0.0.1)
with the tiny models. Every S3/SQS request of the bot and the agents goes through a fault-injecting HTTP proxy
(bench/_system.py) that answers a seeded share with HTTP 500, 503 or a throttling error (S3 ``SlowDown``, SQS
``ThrottlingException``); boto3's standard retry mode handles them as it would against AWS. While the members
order, random agents are SIGKILLed (and replaced), one agent gets a spot interruption notice from its own fake
instance-metadata service (it drains and exits; a replacement starts), and the bot is restarted twice: first
with SIGTERM (a deploy), then with SIGKILL (a crash).

Afterwards (faults off, a settle period) it reads what members saw in the sim, the order store and the blob
store: lost orders (no result, failure notice or cancel answer), orders posted twice, orphan blobs (under
users/ with no live row referring to them, checkpoints of finished jobs), stuck orders (not final, or an
undelivered outbox row) and credit mismatches (per (server, member): balance = granted − charged + refunded;
failed/cancelled orders refunded in full, delivered ones not refunded). Goal: 0 lost, 0 posted twice, 0 orphan
blobs, 0 stuck, 0 credit mismatches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import boto3
from _args import count
from _system import FaultProxy, Processes, SpotImds, start_moto
from pydantic import SecretStr
from sqlmodel import select

from cloud.queues import open_queues
from photogen.assets import demo_photos
from photogen.discord_sim import DiscordSim
from storage import (
    CreditEntry,
    Delivery,
    Image,
    Job,
    Order,
    TrainedModel,
    migrate,
    open_engine,
    read_session,
)
from storage.blobs import open_blob_store
from storage.models import FINAL_STATUSES, GRANT_KINDS
from storage.settings import Settings, load_settings

AGENTS = 2
ACK_TIMEOUT = 10.0  # the sim's interaction window is generous; a live bot defers at once
ANSWER_TIMEOUT = 90.0


@dataclass
class Run:
    sim: DiscordSim
    settings: Settings
    procs: Processes
    guild: Any
    channel: Any
    rng: random.Random
    deadline: float  # monotonic: members stop placing orders
    chaos: Counter[str] = field(default_factory=Counter)
    unanswered_commands: int = 0
    late_answers: int = 0
    stop: bool = False


async def _bot_up(run: Run, timeout: float = 60) -> None:
    await run.sim.wait_until(lambda: run.sim.bot_connected, timeout)


async def _command(run: Run, member: Any, name: str, options: dict[str, Any], **kw: Any) -> Any:
    """A member runs a command, and runs it again (as a person would) when the bot never acknowledged it ("The
    application did not respond": it was down) or went down before answering; otherwise waits for the
    answer."""
    for _ in range(4):
        await _bot_up(run)
        generation = run.chaos["bot_restarts"]
        try:
            inter = await run.sim.invoke_command(member, run.channel, name, options, **kw)
            await inter.wait_response(timeout=ACK_TIMEOUT)
        except Exception:
            run.unanswered_commands += 1
            await asyncio.sleep(1)
            continue
        try:
            await run.sim.wait_until(
                lambda i=inter, g=generation: _answered(i) or run.chaos["bot_restarts"] != g, ANSWER_TIMEOUT
            )
        except Exception:
            run.late_answers += 1
            return None
        if _answered(inter):
            return inter.original
        run.unanswered_commands += 1  # the bot died between "thinking…" and the answer
    return None


def _answered(inter: Any) -> bool:
    return inter.original is not None and not inter.original.loading


def _order_id_of(message: Any) -> str | None:
    for custom_id in message.custom_ids() if message is not None else ():
        if custom_id.startswith("pg:cancel:"):
            return custom_id.removeprefix("pg:cancel:")
    return None


def _model_ready(run: Run, user_id: int) -> bool:
    engine = open_engine(run.settings.database_url)
    try:
        with read_session(engine) as s:
            return (
                s.exec(
                    select(TrainedModel).where(
                        TrainedModel.user_id == str(user_id), TrainedModel.status == "ready"
                    )
                ).first()
                is not None
            )
    finally:
        engine.dispose()


async def _member(run: Run, member: Any, renders: int, cancels: int, followups: int) -> None:
    """One member: trains a model, waits for it, then orders pictures (some cancelled, some followed up)."""
    await _command(
        run,
        member,
        "train",
        {"name": f"{member.name}-model", "class_word": "person"},
        attachments=demo_photos(),
    )
    while not _model_ready(run, member.id):
        if time.monotonic() > run.deadline:
            return
        await asyncio.sleep(1)
    for i in range(renders):
        if time.monotonic() > run.deadline:
            return
        status = await _command(
            run,
            member,
            "imagine",
            {"prompt": f"a photo of {{subject}} #{i}", "count": 1 + i % 2, "seed": run.rng.randrange(10**6)},
        )
        order_id = _order_id_of(status)
        if order_id and i < cancels:
            await _command(run, member, "cancel", {"order": order_id})
        elif order_id and i < cancels + followups:
            await _follow_up(run, member, order_id)
        await asyncio.sleep(run.rng.uniform(0.2, 1.5))


async def _follow_up(run: Run, member: Any, order_id: str) -> None:
    """Waits for the result and presses V1 or U1 on it (a new order)."""
    try:
        result = await run.sim.wait_for_message(
            run.channel,
            lambda m: any(c.startswith(f"pg:up:{order_id}:") for c in m.custom_ids()),
            timeout=120,
        )
    except Exception:
        return
    action = run.rng.choice(("var", "up"))
    for _ in range(3):
        await _bot_up(run)
        try:
            inter = await run.sim.click(member, result, f"pg:{action}:{order_id}:0")
            await inter.wait_response(timeout=ACK_TIMEOUT)
            return
        except Exception:
            run.unanswered_commands += 1
            await asyncio.sleep(1)


async def _keep_agents(run: Run) -> None:
    """The supervisor (compose's restart policy, the ASG): two agents, a fresh one for each that died."""
    while not run.stop:
        while len(run.procs.live("agent")) < AGENTS:
            run.procs.spawn(
                "agent", SpotImds(), AGENT_WORK_DIR=str(run.procs.tmp / f"agent{run.chaos['spawned']}")
            )
            run.chaos["spawned"] += 1
        await asyncio.sleep(0.5)


def _busy_first(agents: list, rng: random.Random) -> list:
    """Agents working on a job first (their last job line is a start), in random order within each group."""

    def busy(proc: Any) -> bool:
        lines = [
            ln for ln in proc.text().splitlines() if ") started" in ln or "released" in ln or " done" in ln
        ]
        return bool(lines) and ") started" in lines[-1]

    rng.shuffle(agents)
    return sorted(agents, key=lambda a: not busy(a))


async def _restart_bot(run: Run, sig: int) -> None:
    bot = run.procs.live("bot")[0]
    bot.kill(sig)
    await asyncio.to_thread(bot.popen.wait, 60)
    run.procs.spawn("bot")
    run.chaos["bot_restarts"] += 1
    run.chaos[f"bot_{signal.Signals(sig).name}"] += 1


async def _chaos(run: Run, kills: int, span_s: float) -> None:
    """Over ``span_s``: SIGKILL ``kills`` random agents, one spot notice, the bot SIGTERMed then SIGKILLed."""
    events = [("kill", run.rng.uniform(0.1, 0.95) * span_s) for _ in range(kills)]
    events += [
        ("spot", run.rng.uniform(0.2, 0.6) * span_s),
        ("bot_term", 0.3 * span_s),
        ("bot_kill", 0.75 * span_s),
    ]
    start = time.monotonic()
    for what, at in sorted(events, key=lambda e: e[1]):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        agents = _busy_first(run.procs.live("agent"), run.rng)
        if what == "kill" and agents:
            agents[0].kill(signal.SIGKILL)
            run.chaos["agent_kills"] += 1
        elif what == "spot":
            spared = [a for a in agents if a.imds is not None and a.imds.action is None]
            if spared:
                spared[0].imds.interrupt(in_s=120)
                run.chaos["spot_notices"] += 1
        elif what == "bot_term":
            await _restart_bot(run, signal.SIGTERM)
        elif what == "bot_kill":
            await _restart_bot(run, signal.SIGKILL)


def _rows(settings: Settings) -> dict[str, list]:
    engine = open_engine(settings.database_url)
    try:
        with read_session(engine) as s:
            return {
                name: list(s.exec(select(model)).all())
                for name, model in (
                    ("orders", Order),
                    ("jobs", Job),
                    ("models", TrainedModel),
                    ("images", Image),
                    ("deliveries", Delivery),
                    ("credit_entries", CreditEntry),
                )
            }
    finally:
        engine.dispose()


def _settled(settings: Settings) -> bool:
    rows = _rows(settings)
    return all(o.status in FINAL_STATUSES for o in rows["orders"]) and all(
        d.status != "pending" for d in rows["deliveries"]
    )


def _text(message: Any) -> str:
    return message.content + json.dumps(message.embeds)


def audit(sim: DiscordSim, settings: Settings) -> dict[str, Any]:
    rows = _rows(settings)
    orders: list[Order] = rows["orders"]
    messages = [m for m in sim.all_messages.values() if not m.deleted]
    findings: dict[str, list] = {
        "lost": [],
        "posted_twice": [],
        "stuck": [],
        "credit_mismatches": [],
        "orphan_blobs": [],
    }
    for o in orders:
        results = [
            m
            for m in messages
            if m.author.bot
            and (
                any(c.split(":")[2:3] == [o.id] for c in m.custom_ids() if c.startswith(("pg:up:", "pg:rr:")))
                or ("trained and ready" in m.content and f"`{o.id}`" in _text(m))
            )
        ]
        failures = [
            m
            for m in messages
            if m.author.bot and "Your order failed" in _text(m) and f"`{o.id}`" in _text(m)
        ]
        cancel_answers = [
            m for m in messages if m.author.bot and f"`{o.id}`" in m.content and "cancelled" in m.content
        ]
        posts = len(results) + len(failures)
        if posts > 1:
            findings["posted_twice"].append(
                {
                    "order": o.id,
                    "kind": o.kind,
                    "status": o.status,
                    "results": len(results),
                    "failure_notices": len(failures),
                }
            )
        if posts == 0 and not (o.status == "cancelled" and cancel_answers):
            findings["lost"].append(
                {"order": o.id, "kind": o.kind, "status": o.status, "error": o.error_code}
            )
        if o.status not in FINAL_STATUSES:
            findings["stuck"].append({"order": o.id, "kind": o.kind, "status": o.status})
        expected_refund = o.credits_charged if o.status in ("failed", "cancelled") else 0
        if o.status in FINAL_STATUSES and o.credits_refunded != expected_refund:
            findings["credit_mismatches"].append(
                {
                    "order": o.id,
                    "status": o.status,
                    "charged": o.credits_charged,
                    "refunded": o.credits_refunded,
                }
            )
    for d in rows["deliveries"]:
        if d.status == "pending":
            findings["stuck"].append({"delivery": d.id, "order": d.order_id, "kind": d.kind})
    # The ledger (storage/credits.py): each member's balance is the sum of their entries; it must equal what
    # was granted minus what their orders say they were charged, plus refunded, minus what expired.
    members = {(e.guild_id, e.user_id) for e in rows["credit_entries"]}
    for guild, user in sorted(members):
        entries = [e for e in rows["credit_entries"] if (e.guild_id, e.user_id) == (guild, user)]
        mine = [o for o in orders if (o.guild_id or "") == guild and o.user_id == user]
        granted = sum(e.amount for e in entries if e.kind in GRANT_KINDS)
        expired = -sum(e.amount for e in entries if e.kind == "expiry")
        expected = (
            granted - sum(o.credits_charged for o in mine) + sum(o.credits_refunded for o in mine) - expired
        )
        balance = sum(e.amount for e in entries)
        if balance != expected or balance < 0:
            findings["credit_mismatches"].append({"member": user, "credits": balance, "expected": expected})
    findings["orphan_blobs"] = _orphans(settings, rows)
    by_status = Counter(o.status for o in orders)
    return {"rows": rows, "findings": findings, "by_status": by_status}


def _dead_letters(settings: Settings) -> int:
    """Messages in the dead-letter queues at the end: work the system gave up on."""
    queues = open_queues(settings)
    try:
        return sum(q.dead_letter_depth() for q in queues.all())
    finally:
        queues.close()


def _orphans(settings: Settings, rows: dict[str, list]) -> list[dict[str, Any]]:
    """Blobs no live row refers to: per-member data without its order/model/image, checkpoints of finished
    jobs, a cancel tombstone of an order that is not cancelled. Shared class images and the control records
    (tombstones, pending re-sweeps: docs/SECURITY.md) are the system's own, not orphans."""
    orders = {o.id: o for o in rows["orders"]}
    jobs = {j.id: j for j in rows["jobs"]}
    models = {m.id for m in rows["models"]}
    referenced = {i.blob_key for i in rows["images"]}
    referenced |= {o.preview_key for o in orders.values() if o.preview_key}
    for d in rows["deliveries"]:
        referenced.update(d.payload.get("image_keys", []))
    orphans = []

    def live_job(job_id: str) -> bool:  # a checkpoint is kept while its job's order is not final
        job = jobs.get(job_id)
        return job is not None and orders[job.order_id].status not in FINAL_STATUSES

    for key in open_blob_store(settings).list(""):
        parts = key.split("/")
        if (
            parts[0] == "users" and len(parts) > 3
        ):  # users/{member}/{kind}/{id}/... (checkpoints, done: both layouts)
            kind, owner = parts[2], parts[3].removesuffix(".json")
            ok = {
                "photos": owner in orders,
                "models": owner in models,
                "renders": key in referenced,
                "previews": owner in jobs,
                "checkpoints": live_job(owner),
                "done": owner in jobs,
            }.get(kind, False)
        elif parts[0] == "checkpoints" and len(parts) > 1:
            ok = live_job(parts[1])
        elif parts[0] == "done" and len(parts) > 1:
            ok = parts[1].removesuffix(".json") in jobs
        elif parts[:2] == ["shared", "class-images"]:
            ok = True  # the base model's prior-preservation images: nobody's data, shared by every order
        elif parts[:2] == ["control", "cancelled"] and len(parts) > 2:
            ok = parts[2] not in orders or orders[parts[2]].status == "cancelled"  # kept by design (ids only)
        elif parts[:2] in (["control", "forgotten"], ["control", "sweeps"]):
            ok = True  # a forget tombstone (kept by design), a deletion still to be repeated
        else:
            ok = False
        if not ok:
            job_id = parts[3] if parts[0] == "users" and len(parts) > 3 else parts[-1]
            job = jobs.get(job_id.removesuffix(".json")) or jobs.get(parts[1] if len(parts) > 1 else "")
            order = orders.get(job.order_id) if job is not None else None
            orphans.append(
                {
                    "key": key,
                    "order": order.id if order else None,
                    "kind": order.kind if order else None,
                    "order_status": order.status if order else None,
                }
            )
    return orphans


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    moto, moto_url = start_moto()
    proxy = FaultProxy(moto_url, args.fault_share, args.seed).start()
    proxy.enabled = False
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url).create_bucket(Bucket="chaos")
    sim = DiscordSim()
    await sim.start()
    guild = sim.add_guild("Chaos Studio")
    channel = sim.add_channel(guild, "studio")
    members = [sim.add_member(guild, f"member{i}") for i in range(args.members)]
    common: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'photogen.db'}",
        "queue_url": "sqs://",
        "blob_url": "s3://chaos/photogen",
        "queue_prefix": "chaos",
        "aws_region": "us-east-1",
        "discord_api_base": sim.api_base,
        "discord_gateway_url": sim.gateway_url,
        "discord_token": SecretStr(sim.token),
        "base_model": "tiny-sd",
        "model_cache_dir": str(tmp / "models"),
        "train_steps": args.train_steps,
        "train_resolution": 64,
        # the photoreal recipe at test scale: prior preservation on, with a few shared class images (as in e2e)
        "train_class_images": 4,
        "deletion_resweep_s": 30,  # cancelled renders' late uploads are swept inside the settle period
        "render_steps": 2,
        "render_size": 64,
        "checkpoint_every_steps": 1,
        "agent_lease_s": 20,
        "agent_heartbeat_s": 4,
        "agent_poll_wait_s": 1,
        "agent_progress_every_s": 1,
        "agent_retry_delay_s": 1,
        "imds_poll_s": 0.5,
        "agent_drain_s": 2,
        "agent_metrics_port": 0,
        "bot_http_port": 0,
        "bot_event_wait_s": 0.5,
        "starting_credits": 1000,
        "bot_rate_limit_per_minute": 1000,
        "bot_max_concurrent_orders": 100,
        "bot_daily_order_quota": 1000,
    }
    settings = load_settings(**common, aws_endpoint_url=proxy.url)
    audit_settings = load_settings(**common, aws_endpoint_url=moto_url)
    migrate(settings.database_url)
    procs = Processes(settings.to_env(), tmp)
    started = time.monotonic()
    run = Run(sim, settings, procs, guild, channel, rng, deadline=started + args.order_s)
    try:
        procs.spawn("bot")
        await sim.wait_for_bot(timeout=90)
        proxy.enabled = True  # the queues exist now (the bot made them); from here on, faults
        keeper = asyncio.create_task(_keep_agents(run))
        others = max(0, args.orders - args.members)  # each member trains once
        per = [others // args.members + (1 if i < others % args.members else 0) for i in range(args.members)]
        renders = [max(0, n - (1 if i < args.followups else 0)) for i, n in enumerate(per)]
        cancels = [1 if i < args.cancels else 0 for i in range(args.members)]
        followups = [1 if i < args.followups else 0 for i in range(args.members)]
        work = asyncio.gather(
            *(_member(run, m, renders[i], cancels[i], followups[i]) for i, m in enumerate(members))
        )
        await asyncio.gather(work, _chaos(run, args.kills, args.chaos_s))
        placed_s = time.monotonic() - started
        proxy.enabled = False  # settle: the storm is over
        settle_deadline = time.monotonic() + args.settle_s
        while time.monotonic() < settle_deadline and not _settled(settings):  # noqa: ASYNC110
            await asyncio.sleep(1)
        await asyncio.sleep(2)  # late posts
        run.stop = True
        await keeper
        result = audit(sim, audit_settings)
        dead_letters = _dead_letters(audit_settings)
    finally:
        procs.stop_all()
        await sim.stop()
        proxy.stop()
        moto.stop()
    wall = time.monotonic() - started
    f = result["findings"]
    orders = result["rows"]["orders"]
    if args.verbose:
        for p in procs.procs:
            print(f"--- {p.name} (rc {p.popen.returncode})\n{p.text()[-3000:]}")
    for name, items in f.items():
        for item in items[:10]:
            print(f"{name}: {item}")
    return {
        "benchmark": "chaos",
        "quick": args.quick,
        "seed": args.seed,
        "members": args.members,
        "orders_planned": args.orders,
        "orders_placed": len(orders),
        "orders_by_kind": dict(Counter(o.kind for o in orders)),
        "delivered": result["by_status"]["delivered"],
        "failed_and_refunded": sum(
            1 for o in orders if o.status == "failed" and o.credits_refunded == o.credits_charged
        ),
        "cancelled": result["by_status"]["cancelled"],
        "lost": len(f["lost"]),
        "posted_twice": len(f["posted_twice"]),
        "orphan_blobs": len(f["orphan_blobs"]),
        "stuck": len(f["stuck"]),
        "credit_mismatches": len(f["credit_mismatches"]),
        "dead_letters": dead_letters,
        "sim_unhandled_requests": len(sim.unhandled),
        "faults_injected": dict(proxy.faults),
        "requests_forwarded": proxy.forwarded,
        "agent_kills": run.chaos["agent_kills"],
        "spot_notices": run.chaos["spot_notices"],
        "bot_restarts": run.chaos["bot_restarts"],
        "bot_restart_signals": ["SIGTERM", "SIGKILL"][: run.chaos["bot_restarts"]],
        "agents_started": run.chaos["spawned"],
        "unacknowledged_commands_retried": run.unanswered_commands,
        "acknowledged_but_unanswered_commands": run.late_answers,
        "orders_placed_s": round(placed_s, 1),
        "wall_s": round(wall, 1),
        "goal": "0 orders lost, 0 posted twice, 0 orphan blobs, 0 stuck orders, 0 credit mismatches",
        "goal_met": bool(orders) and not any(f.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="9 orders from 3 members")
    ap.add_argument("--orders", type=count(1), default=None, help="orders to place (default 50; quick 9)")
    ap.add_argument("--members", type=count(1), default=None, help="members ordering (default 5; quick 3)")
    ap.add_argument(
        "--fault-share", type=float, default=0.05, help="share of S3/SQS requests answered with an error"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--verbose", action="store_true", help="print the tail of every process's log")
    args = ap.parse_args()
    if not 0 <= args.fault_share < 1:
        ap.error("--fault-share must be in [0, 1)")
    quick = args.quick
    args.orders = args.orders or (9 if quick else 50)
    args.members = args.members or (3 if quick else 5)
    args.train_steps = 3 if quick else 6
    args.kills = 2 if quick else 6
    args.cancels = 1 if quick else 2
    args.followups = 1 if quick else 3
    args.chaos_s = 90.0 if quick else 300.0
    args.order_s = 150.0 if quick else 420.0  # members stop placing orders after this
    args.settle_s = 60.0 if quick else 180.0
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        summary = asyncio.run(bench(args, Path(tmp)))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
