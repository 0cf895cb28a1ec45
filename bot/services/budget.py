"""Server budgets (issue 15): a price before spending, a refusal past the month's budget, alerts at 50/80/100 %.

A server's admin sets a monthly budget in dollars, or in GPU-hours (self-hosters who pay nothing per hour), and a
confirm threshold in the same unit (``/admin budget``). Before an order is placed its cost is estimated: the GPU
seconds measured for that kind of job (storage/budget.py) times the current price of the pool that will run it
(bot/costs.py: the instance type that ran that kind of job last, at today's price table and market; before any
ran, the fleet's pool when one is configured, else the self-hosted price). The month's use is what the server's
orders recorded since the first of the month (UTC) plus the estimates of its open orders; an order that would
take it past the budget is refused with the numbers. Blocking functions: call them through ``bot.run_blocking``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bot import costs
from bot.backends import Backends
from bot.errors import Busy, Refused
from storage import budget as store
from storage import order_store, read_session, transaction
from storage.budget import JobShape
from storage.models import BUDGET_UNITS, Order
from storage.settings import Settings

UNIT_WORDS = {"usd": "dollars", "gpu_hours": "GPU-hours"}


def fmt(amount: float, unit: str) -> str:
    """$4.10, $0.004, 1.25 GPU-hours."""
    if unit == "gpu_hours":
        return f"{amount:.2f} GPU-hours" if amount >= 0.1 or amount == 0 else f"{amount:.3f} GPU-hours"
    return f"${amount:.2f}" if amount >= 0.1 or amount == 0 else f"${amount:.3f}"


def describe(shape: JobShape) -> str:
    """What the member asked for, as the price line names it."""
    if shape.kind == "train":
        return "training"
    if shape.mode == "upscale":
        return "upscale"
    if shape.mode == "group":
        return "group picture" if shape.count == 1 else f"group picture ({shape.count} pictures)"
    return "picture" if shape.count == 1 else f"set of {shape.count} pictures"


# --- the price of one job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    shape: JobShape
    gpu_seconds: float
    per_hour: float
    price_source: str  # "g5.xlarge spot", "self-hosted"
    samples: int  # finished jobs the GPU time was measured on (0: the documented default)

    def amount(self, unit: str) -> float:
        hours = self.gpu_seconds / 3600
        return hours if unit == "gpu_hours" else hours * self.per_hour


def pool_price(settings: Settings, kind: str, measured: store.Measured) -> costs.Price:
    """The current price of the pool that will run a ``kind`` job (see the module's docstring)."""
    market = costs.market_of(settings, kind)
    if measured.instance_seen:
        return costs.price_of(settings, measured.instance_type, market)
    if settings.fleet_agent_image or settings.fleet_ami_id:
        types = (
            settings.fleet_train_instance_types if kind == "train" else settings.fleet_render_instance_types
        )
        if types:  # any type of the pool may be picked: quote the dearest, never less than it may cost
            return max((costs.price_of(settings, t, market) for t in types), key=lambda p: p.per_hour)
    return costs.price_of(settings, None, market)


def _quote(session: Any, settings: Settings, shape: JobShape) -> Quote:
    measured = store.estimate_seconds(session, shape, settings.render_steps)
    price = pool_price(settings, shape.kind, measured)
    return Quote(shape, measured.seconds, price.per_hour, price.source, measured.samples)


def quote(b: Backends, shape: JobShape) -> Quote:
    with read_session(b.engine) as s:
        return _quote(s, b.settings, shape)


def followup_shape(settings: Settings, parent_params: dict[str, Any], action: str) -> JobShape:
    """The job a U (``up``), V (``var``) or 🔄 (``rr``) click on a result would place (bot/services/
    member_orders.place_followup_render, bot/services/group.place_followup)."""
    shape = store.shape_of("render", parent_params, settings.render_steps)
    if shape.mode == "group":
        return shape
    if action == "up":
        w, h = min(shape.width * 2, 2048), min(shape.height * 2, 2048)
        return JobShape("render", "upscale", 1, w - w % 8, h - h % 8, shape.steps)
    return JobShape(
        "render",
        "variation" if action == "var" else "txt2img",
        shape.count,
        shape.width,
        shape.height,
        shape.steps,
    )


# --- a server's month ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    guild_id: str
    limit: float | None  # None: no budget
    unit: str
    confirm_above: float | None  # None: never asked first
    month: str  # "November"
    spent: float  # recorded this month, in ``unit``
    booked: float  # the open orders' estimates, in ``unit``

    @property
    def used(self) -> float:
        return self.spent + self.booked

    @property
    def percent(self) -> float | None:
        return None if not self.limit else 100.0 * self.spent / self.limit


def _budget(session: Any, settings: Settings, guild_id: object, at: float) -> Budget:
    g = order_store.get_guild_settings(session, guild_id)
    unit = g.budget_unit if g.budget_unit in BUDGET_UNITS else "usd"
    used = store.used_since(session, guild_id, store.month_start(at))
    booked = 0.0
    quotes: dict[JobShape, Quote] = {}
    for kind, params in store.open_orders(session, guild_id):
        shape = store.shape_of(kind, params, settings.render_steps)
        if shape not in quotes:
            quotes[shape] = _quote(session, settings, shape)
        booked += quotes[shape].amount(unit)
    return Budget(
        guild_id=str(guild_id),
        limit=g.budget_limit,
        unit=unit,
        confirm_above=g.budget_confirm_above,
        month=store.month_name(at),
        spent=used.gpu_seconds / 3600 if unit == "gpu_hours" else used.usd,
        booked=booked,
    )


def budget_of(b: Backends, guild_id: object, *, now: float | None = None) -> Budget:
    with read_session(b.engine) as s:
        return _budget(s, b.settings, guild_id, time.time() if now is None else now)


@dataclass(frozen=True)
class Check:
    quote: Quote
    budget: Budget

    @property
    def amount(self) -> float:
        return self.quote.amount(self.budget.unit)

    @property
    def ask(self) -> bool:
        """Above the server's threshold: the member confirms the price first."""
        return self.budget.confirm_above is not None and self.amount > self.budget.confirm_above

    def price_text(self) -> str:
        unit = self.budget.unit
        text = f"This {describe(self.quote.shape)} will cost about **{fmt(self.amount, unit)}**"
        if unit == "usd":
            text += f" ({self.quote.gpu_seconds / 60:.1f} GPU-minutes)"
        text += "."
        if self.budget.limit is not None:
            text += (
                f" This server has used {fmt(self.budget.used, unit)} of its {fmt(self.budget.limit, unit)} "
                f"budget for {self.budget.month}."
            )
        return text


def check_order(b: Backends, guild_id: object, shape: JobShape, *, now: float | None = None) -> Check | None:
    """The price of ``shape`` for this server, and whether the member must confirm it; raises ``Busy`` with the
    numbers when it would take the server past its budget this month. None: the server has neither a budget
    nor a confirm threshold (nothing to check)."""
    with read_session(b.engine) as s:
        g = order_store.get_guild_settings(s, guild_id)
        if g.budget_limit is None and g.budget_confirm_above is None:
            return None
        at = time.time() if now is None else now
        budget = _budget(s, b.settings, guild_id, at)
        check = Check(_quote(s, b.settings, shape), budget)
    limit, unit = budget.limit, budget.unit
    if limit is not None and budget.used + check.amount > limit + 1e-9:
        booked = (
            f" ({fmt(budget.booked, unit)} more is booked by orders in progress)" if budget.booked else ""
        )
        raise Busy(
            f"This server has spent {fmt(budget.spent, unit)} of its {fmt(limit, unit)} budget for "
            f"{budget.month}{booked}; this {describe(shape)} would cost about {fmt(check.amount, unit)}. "
            "Nothing was queued or charged; the server's admins can raise the budget."
        )
    return check


# --- the admins' side ---------------------------------------------------------------------------------------


def set_budget(
    b: Backends,
    guild_id: object,
    *,
    limit: float | None = None,
    unit: str | None = None,
    confirm_above: float | None = None,
) -> Budget:
    """Change what is given; a new unit needs the amounts in it (a budget of 5 dollars is not 5 GPU-hours)."""
    if unit is not None and unit not in BUDGET_UNITS:
        raise Refused("The unit is dollars or GPU-hours.")
    with transaction(b.engine) as s:
        current = order_store.get_guild_settings(s, guild_id)
        new_unit = unit is not None and unit != current.budget_unit
        amounts_set = current.budget_limit is not None or current.budget_confirm_above is not None
        if new_unit and amounts_set and limit is None and confirm_above is None:
            raise Refused("Give the budget (and the threshold) in the new unit too.")
        changes: dict[str, Any] = {}
        if unit is not None and unit != current.budget_unit:
            changes.update(
                budget_unit=unit,
                budget_limit=limit,
                budget_confirm_above=confirm_above,
                budget_alert_month=None,
                budget_alert_percent=0,
            )
        if limit is not None:
            changes["budget_limit"] = limit
            # A new budget is a new set of alerts: 50 % of 10 dollars is not 50 % of 5.
            changes.update(budget_alert_month=None, budget_alert_percent=0)
        if confirm_above is not None:
            changes["budget_confirm_above"] = confirm_above
        if not changes:
            raise Refused("Nothing to change: give a budget, a unit or a confirm threshold.")
        order_store.update_guild_settings(s, guild_id, **changes)
    return budget_of(b, guild_id)


def clear_budget(b: Backends, guild_id: object) -> None:
    with transaction(b.engine) as s:
        order_store.update_guild_settings(
            s,
            guild_id,
            budget_limit=None,
            budget_unit="usd",
            budget_confirm_above=None,
            budget_alert_month=None,
            budget_alert_percent=0,
        )


def budget_text(budget: Budget) -> str:
    unit = budget.unit
    if budget.limit is None:
        lines = [f"No monthly budget. Used in {budget.month}: {fmt(budget.spent, unit)}."]
    else:
        lines = [
            f"Budget for {budget.month}: {fmt(budget.limit, unit)} ({UNIT_WORDS[unit]}).",
            f"Spent: {fmt(budget.spent, unit)} ({budget.percent or 0:.0f} %); booked by orders in progress: "
            f"{fmt(budget.booked, unit)}; left: {fmt(max(0.0, budget.limit - budget.used), unit)}.",
        ]
    if budget.confirm_above is None:
        lines.append("Members are not asked to confirm a price.")
    else:
        lines.append(f"Members confirm the price of orders above {fmt(budget.confirm_above, unit)}.")
    return "\n".join(lines)


# --- alerts -------------------------------------------------------------------------------------------------


def after_usage(b: Backends, order_id: str, *, now: float | None = None) -> int | None:
    """Once a job's usage is recorded: the highest of 50/80/100 % of its server's budget the month's spend has
    reached, queued for the admin log channel in the same transaction that notes it, so each is posted once
    per month per server. Returns the percent queued (None: none due)."""
    at = time.time() if now is None else now
    with transaction(b.engine) as s:
        order = s.get(Order, order_id)
        if order is None or not order.guild_id:
            return None
        g = order_store.get_guild_settings(s, order.guild_id)
        if not g.budget_limit or not g.admin_log_channel_id:
            return None
        budget = _budget(s, b.settings, order.guild_id, at)
        percent = budget.percent or 0.0
        reached = max((p for p in store.ALERT_PERCENTS if percent >= p), default=0)
        if not reached or not store.claim_alert(s, order.guild_id, at, reached):
            return None
        unit = budget.unit
        text = (
            f"💸 **Budget {reached} %**: this server has spent {fmt(budget.spent, unit)} of its "
            f"{fmt(budget.limit or 0.0, unit)} budget for {budget.month} ({percent:.0f} %)."
            + (
                " New orders are refused until the budget is raised or the month ends."
                if reached >= 100
                else ""
            )
        )
        order_store.add_delivery(
            s, order_id, store.ALERT_KIND, {"log_channel_id": g.admin_log_channel_id, "text": text}
        )
        return reached
