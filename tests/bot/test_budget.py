"""Server budgets over the Discord sim (issue 15 item 1): an admin sets a monthly budget and a confirm threshold;
a member's /imagine shows its price and runs only after Confirm (Cancel leaves nothing); an order that would pass
the budget is refused with the numbers; the 50 % alert lands once in the admin log channel."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from agent_part import picture
from studio import Studio, order_rows, private_answer, queued_messages, stored_user_blobs
from test_train import good_photos

from bot import budget_gate
from bot.services import budget
from cloud.messages import RenderJob
from photogen.discord_sim.models import SimMessage
from storage import budget as store
from storage import keys, metrics, order_store, transaction

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
    await st.sim.wait_for_message(
        st.channel, lambda m: any("pg:rr:" in c for c in m.custom_ids()), timeout=10
    )
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


async def test_train_price_cancelled_leaves_no_blobs(studio: Studio, faces_dir: Path) -> None:
    """/train: the photos are checked before the price is shown; Cancel then leaves no photo, order or job."""
    st = studio
    # A self-hoster's budget: the default estimate of a training (900 GPU-seconds) is 0.25 GPU-hours.
    await _admin(st, "admin budget set", {"amount": 10.0, "unit": "gpu_hours", "confirm_above": 0.1})
    inter = await st.sim.invoke_command(
        st.alice,
        st.channel,
        "train",
        {"name": "me", "class_word": "woman"},
        attachments=good_photos(faces_dir),
    )
    ask = await inter.wait_followup(timeout=60)
    assert ask.ephemeral and "0.25 GPU-hours" in str(ask.embeds), ask.embeds
    assert "confirm the price" in (inter.original.content or "").lower()  # public: no price, no photos
    click = await st.sim.click(st.alice, ask, _button(ask, "Cancel"))
    await click.wait_response()
    await st.sim.wait_until(lambda: inter.original is not None and inter.original.deleted, 5)
    assert stored_user_blobs(st.b) == [] and order_rows(st.b) == 0 and queued_messages(st.b) == 0


async def test_followup_button_priced_and_no_answer_leaves_nothing(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """🔄 on a result is a new order: priced like /imagine; no answer in time is a cancel."""
    st = studio
    st.seed_model(st.alice)
    await _admin(st, "admin budget set", {"amount": 10.0, "unit": "gpu_hours", "confirm_above": 0.0})
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "at sea", "count": 1})
    ask = await inter.wait_followup()
    assert "GPU-hours" in str(ask.embeds) and "$" not in str(ask.embeds), ask.embeds
    await (await st.sim.click(st.alice, ask, _button(ask, "Confirm"))).wait_response()
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(_finish, st, job, 40.0)
    result = await st.sim.wait_for_message(
        st.channel, lambda m: f"pg:rr:{job.order_id}:0" in m.custom_ids(), 10
    )
    orders = order_rows(st.b)
    monkeypatch.setattr(budget_gate, "CONFIRM_TIMEOUT_S", 0.5)
    click = await st.sim.click(st.alice, result, f"pg:rr:{job.order_id}:0")
    ask = await click.wait_followup()
    assert ask.ephemeral and "This picture will cost about" in str(ask.embeds), ask.embeds
    await st.sim.wait_until(lambda: "no answer" in st.sim.all_messages[ask.id].content.lower(), 5)
    await st.sim.wait_until(lambda: click.original is not None and click.original.deleted, 5)
    assert order_rows(st.b) == orders and queued_messages(st.b) == 0
    spent = await asyncio.to_thread(budget.budget_of, st.b, st.guild.id)
    assert spent.spent == pytest.approx(40.0 / 3600) and spent.booked == 0.0


async def test_alerts_at_50_80_100_once_each_per_month(studio: Studio) -> None:
    st = studio
    log_channel = st.sim.add_channel(st.guild, "admin-log")
    await _admin(st, "admin config", {"log_channel": log_channel})
    await _admin(st, "admin budget set", {"amount": 1.0, "unit": "gpu_hours"})
    now = time.time()
    with transaction(st.b.engine) as s:
        order = order_store.create_order(
            s, user_id=st.bob.id, kind="render", guild_id=st.guild.id, starting_credits=0
        )
    posted = []
    for i, seconds in enumerate((1000.0, 900.0, 100.0, 1000.0, 500.0)):  # 28, 53, 56, 83, 97 … %
        with transaction(st.b.engine) as s:
            metrics.record_job_usage(
                s,
                event_id=f"e{i}",
                order_id=order.id,
                job_id="j",
                job_kind="render",
                outcome="done",
                gpu_seconds=seconds,
                price_per_hour=0.0,
                at=now,
            )
        posted.append(await asyncio.to_thread(budget.after_usage, st.b, order.id, now=now))
    assert posted == [None, 50, None, 80, None]
    with transaction(st.b.engine) as s:
        metrics.record_job_usage(
            s, event_id="e9", order_id=order.id, job_id="j", job_kind="render", outcome="done",
            gpu_seconds=200.0, price_per_hour=0.0, at=now,
        )  # fmt: skip
    assert await asyncio.to_thread(budget.after_usage, st.b, order.id, now=now) == 100
    assert await asyncio.to_thread(budget.after_usage, st.b, order.id, now=now) is None
    # A new month starts the alerts again (its spend is counted from its first day).
    next_month = store.month_start(now) + 40 * 86400
    assert await asyncio.to_thread(budget.after_usage, st.b, order.id, now=next_month) is None
    texts = await st.sim.wait_for_message(log_channel, lambda m: "Budget 100 %" in m.content, timeout=10)
    assert "refused until the budget is raised" in texts.content
    alerts = [m.content for m in st.sim.messages(log_channel) if "💸" in m.content]
    assert [a.split("**")[1] for a in alerts] == ["Budget 50 %", "Budget 80 %", "Budget 100 %"], alerts


async def test_edit_and_backdrop_are_priced_before_anything_is_placed(studio: Studio) -> None:
    """✏️ Edit (after its modal) and 🪄 Clean backdrop are new orders too: the price first, Cancel leaves nothing."""
    st = studio
    st.seed_model(st.alice)
    await _admin(st, "admin budget set", {"amount": 10.0, "unit": "gpu_hours", "confirm_above": 0.0})
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "at sea", "count": 1})
    ask = await inter.wait_followup()
    await (await st.sim.click(st.alice, ask, _button(ask, "Confirm"))).wait_response()
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(_finish, st, job, 40.0)
    result = await st.sim.wait_for_message(
        st.channel, lambda m: f"pg:edit:{job.order_id}" in m.custom_ids(), 10
    )
    orders = order_rows(st.b)

    click = await st.sim.click(st.alice, result, f"pg:edit:{job.order_id}")
    await click.wait_response()  # the modal
    submit = await st.sim.submit_modal(st.alice, click, {"instruction": "make it night", "picture": "1"})
    ask = await submit.wait_followup()
    assert ask.ephemeral and "will cost about" in str(ask.embeds), ask.embeds
    await (await st.sim.click(st.alice, ask, _button(ask, "Cancel"))).wait_response()
    assert order_rows(st.b) == orders and queued_messages(st.b) == 0

    picker = await private_answer(await st.sim.click(st.alice, result, f"pg:bd:{job.order_id}"))
    click = await st.sim.click(st.alice, picker, f"pg:bd:{job.order_id}:0:white")
    ask = await click.wait_followup()
    assert ask.ephemeral and "will cost about" in str(ask.embeds), ask.embeds
    await (await st.sim.click(st.alice, ask, _button(ask, "Cancel"))).wait_response()
    assert order_rows(st.b) == orders and queued_messages(st.b) == 0
