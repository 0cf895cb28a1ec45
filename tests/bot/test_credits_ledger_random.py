"""The Done-when test of issue 15 item 2: a seeded random sequence of grants, /train and /imagine orders, re-rolls,
agent failures, member and admin cancels, group pictures refused, timed out, withdrawn or started, and expiry,
driven through the bot's real services (bot/services/*) on a real SQLite store, queue and blob folder. No
Discord: the services are what the commands call; the agent's part is its public contract, the events it sends.

After every step, for every member in every server: the balance the member is shown (/credits' embed) equals the
sum of their ledger entries, equals starting + grants − charges + refunds − expiry as this test computes it
from the steps alone (prices from the settings, its own clock, its own oldest-first lots for expiry), and is
never negative. At the end every order's charged/refunded equal its own entries.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import col, func, select, update

from bot.backends import Backends, open_backends
from bot.checks import GuildRules
from bot.errors import Busy, NotFound
from bot.services import admin, delivery, group, member_orders
from bot.services import credits as credits_svc
from cloud.consumer import receive
from cloud.messages import ErrorInfo, Event, ImageSafety, RenderJob, TrainJob
from storage import CreditEntry, Order, credits, keys, order_store, read_session, transaction
from storage.models import GroupConsent
from storage.settings import load_settings

SEED = 20261130
STEPS = 110
SHOW_EVERY = 10  # steps between two checks of the balance /credits shows
DAY = 86400.0
EXPIRE_DAYS = 7
G1, G2 = 1001, 1002
ADMIN = {G1: 901, G2: 902}
MEMBERS = {G1: (1, 2, 3), G2: (1, 4)}  # member 1 is in both servers


class Clock:
    """The ledger's clock (storage.credits.now): each step moves it on by up to two days."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Expected:
    """One member in one server, from the steps alone."""

    started: bool = False
    lots: list[tuple[float, int]] = field(default_factory=list)  # (when, credits) of each grant, starting too
    starting: int = 0
    granted: int = 0
    charged: int = 0
    refunded: int = 0
    expired: int = 0

    @property
    def balance(self) -> int:
        return self.starting + self.granted - self.charged + self.refunded - self.expired

    def due(self, cutoff: float) -> int:
        """What is left of the lots granted by ``cutoff``, spending (net of refunds) from the oldest lot."""
        spend = self.charged - self.refunded + self.expired
        left = 0
        for when, amount in sorted(self.lots):
            used = min(amount, spend)
            spend -= used
            if when <= cutoff:
                left += amount - used
        return left


@dataclass
class Live:
    """An order holding a job (queued): what it was charged, to be refunded if it fails or is cancelled."""

    order_id: str
    guild: int
    user: int
    cost: int
    job: TrainJob | RenderJob
    group_other: int | None = None


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/photogen.db",
        queue_url=f"sqlite:///{tmp_path}/queue.db",
        blob_url=f"file://{tmp_path}/blobs",
        starting_credits=20,
        train_credit_cost=10,
        render_credit_cost=1,
        bot_max_concurrent_orders=100,
        bot_daily_order_quota=100000,
        credits_expire_days=EXPIRE_DAYS,
    )
    b = open_backends(settings)
    try:
        yield b
    finally:
        b.close()


def _seed_models(b: Backends) -> None:
    with transaction(b.engine) as s:
        for user in (1, 2, 3, 4):
            order_store.get_or_create_user(s, user)
            model_id = f"m{user}"
            order_store.add_model(
                s,
                user_id=user,
                name="me",
                class_word="person",
                subject_token=f"sks{user}",
                base_model="tiny-sd",
                model_id=model_id,
            )
            order_store.mark_model_ready(s, model_id, keys.model_key(user, model_id))


def _shown_balance(b: Backends, guild: int, user: int) -> int:
    """The number /credits shows the member."""
    embed = credits_svc.ledger_embed(credits_svc.ledger_of(b, guild, user), title="", for_admin=False)
    found = re.fullmatch(r"(-?\d+) credit\(s\)", embed.fields[0].value or "")
    assert found, embed.fields[0].value
    return int(found.group(1))


def _entry_sums(b: Backends) -> dict[tuple[int, int], int]:
    """Every member's ledger sum in every server, in one query."""
    with read_session(b.engine) as s:
        rows = s.exec(
            select(CreditEntry.guild_id, CreditEntry.user_id, func.sum(CreditEntry.amount)).group_by(
                CreditEntry.guild_id, CreditEntry.user_id
            )
        )
        return {(int(g), int(u)): int(total) for g, u, total in rows}


def _take(b: Backends, kind: type[TrainJob] | type[RenderJob]) -> TrainJob | RenderJob:
    queue = b.queues.train if kind is TrainJob else b.queues.render
    got = receive(queue, kind, max_messages=1, wait_s=1.0, lease_s=60)
    assert got, "no job was queued"
    lease, job = got[0]
    queue.ack(lease)
    return job


def _event(live: Live, kind: str, **fields: object) -> Event:
    return Event(
        job_id=live.job.job_id,
        order_id=live.order_id,
        job_kind="train" if isinstance(live.job, TrainJob) else "render",
        kind=kind,  # type: ignore[arg-type]
        agent_id="test-agent",
        **fields,  # type: ignore[arg-type]
    )


class Run:
    def __init__(self, b: Backends, rng: random.Random, clock: Clock) -> None:
        self.b, self.rng, self.clock = b, rng, clock
        self.expected = {(g, u): Expected() for g, users in MEMBERS.items() for u in users}
        self.live: list[Live] = []
        self.delivered: list[Live] = []  # render orders done: their 🔄 re-roll is a new, charged order
        self.asked: list[
            tuple[str, int, int, int, int]
        ] = []  # group orders waiting: (id, guild, caller, other, cost)
        self.counts: dict[str, int] = {}

    def rules(self, guild: int) -> GuildRules:
        return GuildRules(guild_id=guild)

    def _pay(self, guild: int, user: int, cost: int) -> bool:
        """An order placed now: the starting credits come first (once); True when the member can pay."""
        e = self.expected[(guild, user)]
        have = e.balance + (0 if e.started else self.b.settings.starting_credits)
        return have >= cost

    def _first_order(self, guild: int, user: int) -> None:
        e = self.expected[(guild, user)]
        if not e.started:
            e.started = True
            e.starting = self.b.settings.starting_credits
            e.lots.append((self.clock.t, e.starting))

    def note(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # --- the steps --------------------------------------------------------------------------------------------

    def grant(self) -> None:
        guild = self.rng.choice([G1, G2])
        user = self.rng.choice(MEMBERS[guild])
        amount = self.rng.randint(1, 12)
        admin.grant_credits(self.b, guild, user, amount, actor_id=ADMIN[guild], reason="random")
        e = self.expected[(guild, user)]
        e.granted += amount
        e.lots.append((self.clock.t, amount))
        self.note("grant")

    def _placed(self, guild: int, user: int, cost: int, place, kind) -> None:  # type: ignore[no-untyped-def]
        if not self._pay(guild, user, cost):
            with pytest.raises(Busy, match=f"costs {cost} credit"):
                place()
            self.note("refused: short")
            return
        placed = place()
        self._first_order(guild, user)
        self.expected[(guild, user)].charged += cost
        job = _take(self.b, kind)
        assert job.order_id == placed.order_id
        self.live.append(Live(placed.order_id, guild, user, cost, job))

    def imagine(self) -> None:
        guild = self.rng.choice([G1, G2])
        user = self.rng.choice(MEMBERS[guild])
        count = self.rng.randint(1, 4)
        cost = count * self.b.settings.render_credit_cost

        def place():  # type: ignore[no-untyped-def]
            return member_orders.place_render_order(
                self.b,
                guild_id=guild,
                channel_id=5,
                user_id=user,
                model_id=None,
                prompt="portrait of {subject}",
                negative_prompt="",
                count=count,
                width=64,
                height=64,
                seed=self.rng.randrange(1000),
                guidance=7.0,
                mode="txt2img",
                source_key=None,
                rules=self.rules(guild),
            )

        self._placed(guild, user, cost, place, RenderJob)
        self.note("imagine")

    def train(self) -> None:
        guild = self.rng.choice([G1, G2])
        user = self.rng.choice(MEMBERS[guild])

        def place():  # type: ignore[no-untyped-def]
            return member_orders.place_train_order(
                self.b,
                guild_id=guild,
                channel_id=5,
                user_id=user,
                name="me",
                class_word="person",
                crops=[b"a face"] * 5,
                rules=self.rules(guild),
            )

        self._placed(guild, user, self.b.settings.train_credit_cost, place, TrainJob)
        self.note("train")

    def reroll(self) -> None:
        if not self.delivered:
            return self.imagine()
        parent = self.rng.choice(self.delivered)
        assert isinstance(parent.job, RenderJob)

        def place():  # type: ignore[no-untyped-def]
            return member_orders.place_followup_render(
                self.b,
                parent.order_id,
                0,
                "rr",
                user_id=parent.user,
                channel_id=5,
                rules=self.rules(parent.guild),
            )

        self._placed(parent.guild, parent.user, parent.cost, place, RenderJob)
        self.note("re-roll")

    def _pick_live(self) -> Live | None:
        return self.live.pop(self.rng.randrange(len(self.live))) if self.live else None

    def _refunded(self, live: Live) -> None:
        self.expected[(live.guild, live.user)].refunded += live.cost

    def fail(self) -> None:
        live = self._pick_live()
        if live is None:
            return
        applied = delivery.apply_event(
            self.b, _event(live, "failed", error=ErrorInfo(code="oom", message="OOM"))
        )
        assert applied.final and applied.forged is None
        self._refunded(live)
        self.note("failed")

    def deliver(self) -> None:
        """A render's done event (no credit moves; a re-roll the likeness check made inside the job is free)."""
        renders = [x for x in self.live if isinstance(x.job, RenderJob) and x.group_other is None]
        if not renders:
            return
        live = self.rng.choice(renders)
        self.live.remove(live)
        assert isinstance(live.job, RenderJob)
        shots = [keys.render_key(live.user, live.job.job_id, n) for n in range(live.job.count)]
        safety = [ImageSafety(key=k, flagged=False, checker="test") for k in shots]
        applied = delivery.apply_event(
            self.b, _event(live, "done", output_keys=shots, render_keys=shots, safety=safety)
        )
        assert applied.final and applied.forged is None
        self.delivered.append(live)
        self.note("delivered")

    def cancel(self) -> None:
        live = self._pick_live()
        if live is None:
            return
        as_admin = self.rng.random() < 0.5
        if as_admin:
            other = G2 if live.guild == G1 else G1
            with pytest.raises(NotFound):  # another server's admin: unknown there, nothing moves
                member_orders.cancel_order(
                    self.b, live.order_id, actor_id=ADMIN[other], as_admin=True, guild_id=other
                )
        actor = ADMIN[live.guild] if as_admin else live.user
        result = member_orders.cancel_order(
            self.b, live.order_id, actor_id=actor, as_admin=as_admin, guild_id=live.guild
        )
        assert result.refunded == live.cost
        self._refunded(live)
        self.note("admin cancel" if as_admin else "member cancel")

    def ask_group(self) -> None:
        guild = self.rng.choice([G1, G2])
        caller, other = self.rng.sample(MEMBERS[guild], 2)
        count = self.rng.randint(1, 2)
        cost = count * 2 * self.b.settings.render_credit_cost

        def ask():  # type: ignore[no-untyped-def]
            return group.request_group(
                self.b,
                guild_id=guild,
                channel_id=5,
                caller_id=caller,
                others=[other],
                model_id=None,
                preset_id=None,
                prompt="at the beach",
                count=count,
                seed=1,
                rules=self.rules(guild),
            )

        if not self._pay(guild, caller, cost):
            with pytest.raises(Busy, match=f"costs {cost} credit"):
                ask()
            self.note("refused: short")
            return
        requested = ask()
        self._first_order(guild, caller)  # the order row is written: the starting credits, nothing charged
        self.asked.append((requested.order_id, guild, caller, other, cost))
        self.note("group asked")

    def answer_group(self) -> None:
        if not self.asked:
            return self.ask_group()
        order_id, guild, caller, other, cost = self.asked.pop(self.rng.randrange(len(self.asked)))
        how = self.rng.choice(["refuse", "timeout", "accept"])
        if how == "refuse":
            outcome = group.answer_request(self.b, order_id, other, False)
            assert outcome.ended and outcome.refunded == 0
        elif how == "timeout":
            with transaction(self.b.engine) as s:  # the deadline passed (the rows hold it)
                s.execute(
                    update(GroupConsent).where(col(GroupConsent.order_id) == order_id).values(expires_at=0.0)
                )
            assert group.expire_due(self.b) == [order_id]
        else:
            can_pay = self.expected[(guild, caller)].balance >= cost
            outcome = group.answer_request(self.b, order_id, other, True)
            assert (outcome.placed is not None) == can_pay and outcome.ended == (not can_pay)
            if can_pay:
                self.expected[(guild, caller)].charged += cost
                job = _take(self.b, RenderJob)
                self.live.append(Live(order_id, guild, caller, cost, job, group_other=other))
        self.note(f"group {how}")

    def withdraw(self) -> None:
        started = [x for x in self.live if x.group_other is not None]
        if not started:
            return self.answer_group()
        live = self.rng.choice(started)
        self.live.remove(live)
        assert live.group_other is not None
        outcome = group.withdraw(self.b, live.order_id, live.group_other)
        assert outcome.refunded == live.cost
        self._refunded(live)
        self.note("group withdrawn")

    def expire(self) -> None:
        expired = credits.expire_all(self.b.engine, EXPIRE_DAYS)  # what the periodic round calls
        cutoff = self.clock.t - EXPIRE_DAYS * DAY
        total = 0
        for e in self.expected.values():
            due = e.due(cutoff)
            e.expired += due
            total += due
        assert expired == total
        self.note("expiry")

    # --- the check ----------------------------------------------------------------------------------------------

    def check(self, step: int, *, shown: bool) -> None:
        """Every step: the ledger sums against this test's own account; every few steps and at the end, the
        balance /credits shows too (a query of its own per member)."""
        sums = _entry_sums(self.b)
        for (guild, user), e in self.expected.items():
            got = sums.get((guild, user), 0)
            assert got == e.balance >= 0, (step, guild, user, got, e)
            if shown:
                assert _shown_balance(self.b, guild, user) == got, (step, guild, user)


def test_random_orders_cancels_and_expiry_keep_every_balance_equal_to_its_ledger(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, rng = backends, random.Random(SEED)
    clock = Clock(1.9e9)
    monkeypatch.setattr(credits, "now", clock)
    _seed_models(b)
    run = Run(b, rng, clock)
    steps = [
        (run.grant, 3),
        (run.imagine, 6),
        (run.train, 2),
        (run.reroll, 2),
        (run.fail, 3),
        (run.deliver, 3),
        (run.cancel, 4),
        (run.ask_group, 2),
        (run.answer_group, 3),
        (run.withdraw, 1),
        (run.expire, 1),
    ]
    actions, weights = zip(*steps, strict=True)
    for step in range(STEPS):
        clock.t += rng.uniform(0, 2 * DAY)
        rng.choices(actions, weights)[0]()
        run.check(step, shown=step % SHOW_EVERY == 0 or step == STEPS - 1)
    # Every kind of step happened, and expiry took something at least once.
    assert {
        "grant",
        "imagine",
        "train",
        "re-roll",
        "failed",
        "member cancel",
        "admin cancel",
        "expiry",
    } <= set(run.counts), run.counts
    assert {"group refuse", "group timeout", "group accept", "refused: short"} <= set(run.counts), run.counts
    with read_session(b.engine) as s:
        kinds = {e.kind for e in s.exec(select(CreditEntry))}
        assert kinds == {"starting", "grant", "charge", "refund", "expiry"}
        for order in s.exec(select(Order)):
            charged, refunded = credits.order_sums(s, order.id)
            assert (order.credits_charged, order.credits_refunded) == (charged, refunded), order.id
