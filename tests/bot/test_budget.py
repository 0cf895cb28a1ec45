"""Server budgets over the Discord sim (issue 15 item 1): an admin sets a monthly budget and a confirm threshold;
a member's /imagine shows its price and runs only after Confirm (Cancel leaves nothing); an order that would pass
the budget is refused with the numbers; the 50 % alert lands once in the admin log channel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent_part import picture
from studio import Studio, order_rows, private_answer, queued_messages

from bot.services import budget
from cloud.messages import RenderJob
from photogen.discord_sim.models import SimMessage
from storage import keys, metrics, order_store, transaction
from storage import budget as store

PRICE_PER_HOUR = 36.0  # the self-hosted price in these tests: one GPU-second costs one cent


def _button(message: SimMessage, label: str) -> str:
    for row in message.components:
        for component in row.get("components", []):
            if component.get("label") == label:
                return str(component["custom_id"])
    raise AssertionError(f"no {label!r} button on {message.components}")


def seed_measurements(st: Studio, seconds: float, *, mode: str = "txt2img", n: int = 3) -> None:
    """Renders of one 64² picture that finished last month, each ``seconds`` on the GPU: what the estimate
    measures (they do not count towards this month's spend)."""
    last_month = store.month_start(time.time()) - 86400
    with transaction(st.b.engine) as s:
        for i in range(n):
            order = order_store.create_order(
                s,
                user_id=st.bob.id,
                kind="render",
                guild_id=st.guild.id,
                params={"mode": mode, "count": 1, "width": 64, "height": 64},
                starting_credits=st.settings.starting_credits,
            )
            order_store.mark_delivered(s, order.id)
            metrics.record_job_usage(
                s,
                event_id=f"seed{i}{mode}",
                order_id=order.id,
                job_id=f"job{i}{mode}",
                job_kind="render",
                outcome="done",
                gpu_seconds=seconds,
                price_per_hour=PRICE_PER_HOUR,
                at=last_month,
            )


async def _admin(st: Studio, name: str, options: dict[str, Any]) -> SimMessage:
    inter = await st.sim.invoke_command(st.admin, st.channel, name, options)
    return await private_answer(inter)


def _finish(st: Studio, job: RenderJob, gpu_seconds: float) -> None:
    """The agent part's finish_render, with the GPU time a real agent reports (self-hosted: no instance type)."""
    st.agent.emit(job, "started")
    outputs = []
    for n in range(job.count):
        key = keys.render_key(job.user_id, job.job_id, n)
        st.b.blobs.put(key, picture(job.seed + n), content_type="image/png")
        outputs.append(key)
    st.agent.emit(job, "done", output_keys=outputs, render_keys=outputs, gpu_seconds=gpu_seconds)


async def test_budget_price_confirm_refusal_and_alert(studio: Studio) -> None:
    st = studio
    st.settings = st.settings.model_copy(update={"self_hosted_gpu_price_per_hour": PRICE_PER_HOUR})
    await st.restart()
    log_channel = st.sim.add_channel(st.guild, "admin-log")
    st.seed_model(st.alice)
    st.seed_model(st.bob)
    seed_measurements(st, 30.0)  # one 64² picture: 30 GPU-seconds, $0.30
    await _admin(st, "admin config", {"log_channel": log_channel})
    shown = await _admin(st, "admin budget set", {"amount": 1.0, "unit": "usd", "confirm_above": 0.2})
    assert "$1.00" in shown.content and "above $0.20" in shown.content, shown.content
    orders_before, credits_before = order_rows(st.b), st.credits(st.alice)

    # Above the threshold: the price, ephemeral, and nothing placed until the member answers. Cancel: nothing.
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "at sea", "count": 1})
    ask = await inter.wait_followup()
    assert ask.ephemeral and "$0.30" in str(ask.embeds), ask.embeds
    assert order_rows(st.b) == orders_before and queued_messages(st.b) == 0
    click = await st.sim.click(st.alice, ask, _button(ask, "Cancel"))
    await click.wait_response()
    await st.sim.wait_until(lambda: inter.original is not None and inter.original.deleted, 5)
    assert "nothing was queued or charged" in st.sim.all_messages[ask.id].content.lower()
    assert order_rows(st.b) == orders_before and queued_messages(st.b) == 0
    assert st.credits(st.alice) == credits_before  # nothing charged (nor the starting credits granted)

    # Confirm: the order is placed as /imagine always places it.
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "at sea", "count": 1})
    ask = await inter.wait_followup()
    assert order_rows(st.b) == orders_before
    click = await st.sim.click(st.alice, ask, _button(ask, "Confirm"))
    await click.wait_response()
    status = await inter.wait_original(lambda m: bool(m.embeds) and not m.loading)
    assert "queued" in str(status.embeds[0]).lower() and not status.ephemeral
    job = await asyncio.to_thread(st.agent.take_render)
    assert job.count == 1 and job.prompt == "at sea"
    assert st.credits(st.alice) == st.settings.starting_credits - st.settings.render_credit_cost

    # While it runs its estimate is booked: three more pictures ($0.90) would pass $1.00 → refused, with numbers.
    inter = await st.sim.invoke_command(st.bob, st.channel, "imagine", {"prompt": "hiking", "count": 3})
    refusal = await private_answer(inter)
    month = store.month_name(time.time())
    text = str(refusal.embeds)
    assert f"spent $0.00 of its $1.00 budget for {month}" in text, text
    assert "$0.30 more is booked" in text and "would cost about $0.90" in text, text
    assert order_rows(st.b) == orders_before + 1 and queued_messages(st.b) == 0

    # The job took 60 s ($0.60): 60 % of the budget → the 50 % alert, once, in the admin log channel.
    await asyncio.to_thread(_finish, st, job, 60.0)
    alert = await st.sim.wait_for_message(log_channel, lambda m: "Budget 50 %" in m.content, timeout=10)
    assert "$0.60 of its $1.00 budget" in alert.content, alert.content
    assert await asyncio.to_thread(budget.after_usage, st.b, job.order_id) is None  # not twice this month
    await st.sim.wait_for_message(st.channel, lambda m: any("pg:rr:" in c for c in m.custom_ids()), timeout=10)
    inter = await st.sim.invoke_command(st.bob, st.channel, "imagine", {"prompt": "hiking", "count": 3})
    refusal = await private_answer(inter)
    assert "spent $0.60 of its $1.00 budget" in str(refusal.embeds), refusal.embeds
    assert len([m for m in st.sim.messages(log_channel) if "Budget" in m.content]) == 1

    shown = await _admin(st, "admin budget show", {})
    assert "Spent: $0.60 (60 %)" in shown.content, shown.content
    await _admin(st, "admin budget clear", {})
    inter = await st.sim.invoke_command(st.bob, st.channel, "imagine", {"prompt": "hiking", "count": 2})
    status = await inter.wait_original(lambda m: bool(m.embeds) and not m.loading)
    assert "queued" in str(status.embeds[0]).lower() and not inter.followups  # no budget: no price asked


async def test_budget_commands_are_per_server_admin_only(studio: Studio) -> None:
    st = studio
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "admin budget set", {"amount": 5.0}, check_permissions=False
    )
    refusal = await private_answer(inter)
    assert "admins" in str(refusal.embeds).lower()
    other = st.sim.add_guild("Elsewhere")
    await _admin(st, "admin budget set", {"amount": 2.0, "unit": "gpu_hours", "confirm_above": 0.1})
    mine = await asyncio.to_thread(budget.budget_of, st.b, st.guild.id)
    theirs = await asyncio.to_thread(budget.budget_of, st.b, other.id)
    assert (mine.limit, mine.unit, mine.confirm_above) == (2.0, "gpu_hours", 0.1)
    assert (theirs.limit, theirs.confirm_above) == (None, None)
    inter = await st.sim.invoke_command(st.admin, st.channel, "admin budget set", {"unit": "usd"})
    refusal = await private_answer(inter)
    assert "new unit" in str(refusal.embeds), refusal.embeds
