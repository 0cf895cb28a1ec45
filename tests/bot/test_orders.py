"""Member commands: /orders, /cancel (own orders only, refunds), /queue, /models, limits with clear messages."""

from __future__ import annotations

import asyncio

from studio import Studio, private_answer

from storage import order_store, read_session


async def _queued_render(st: Studio, member, **options) -> str:
    inter = await st.sim.invoke_command(member, st.channel, "imagine", {"prompt": "portrait", **options})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    return (await asyncio.to_thread(st.agent.take_render)).order_id


async def test_cancel_is_owner_only_and_refunds(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    order_id = await _queued_render(st, st.alice, count=3)
    status = next(m for m in st.sim.messages(st.channel) if f"pg:cancel:{order_id}" in m.custom_ids())

    inter = await st.sim.invoke_command(st.bob, st.channel, "cancel", {"order": order_id})
    assert "not yours" in str((await inter.wait_response()).embeds).lower()
    click = await st.sim.click(st.bob, status, f"pg:cancel:{order_id}")
    assert "not yours" in str((await click.wait_response()).embeds).lower()
    assert st.b and (await asyncio.to_thread(lambda: orders_status(st, order_id))) == "queued"

    # Bob's autocomplete does not offer Alice's order.
    choices = await st.sim.autocomplete(st.bob, st.channel, "cancel", {"order": ""}, "order")
    assert choices == []
    click = await st.sim.click(st.alice, status, f"pg:cancel:{order_id}")
    assert "3 credit(s) refunded" in (await click.wait_response()).content
    assert orders_status(st, order_id) == "cancelled"
    await st.sim.wait_until(lambda: "cancelled" in str(st.sim.all_messages[status.id].embeds).lower(), 5)
    assert st.sim.all_messages[status.id].custom_ids() == []  # no Cancel button on a final order
    assert st.credits(st.alice) == st.settings.starting_credits
    inter = await st.sim.invoke_command(st.alice, st.channel, "cancel", {"order": order_id})
    assert "already cancelled" in str((await inter.wait_response()).embeds).lower()


def orders_status(st: Studio, order_id: str) -> str:
    with read_session(st.b.engine) as s:
        return order_store.get_order(s, order_id).status


async def test_limits_and_listings(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice, "holiday")
    first = await _queued_render(st, st.alice)
    await _queued_render(st, st.alice)
    # Concurrent-order limit (2 by default): the third is refused with a clear message and nothing queued.
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "third"})
    msg = await private_answer(inter)
    assert "already have 2 order(s) in progress" in str(msg.embeds)
    assert st.b.queues.render.depth().backlog == 0

    inter = await st.sim.invoke_command(st.alice, st.channel, "orders")
    response = await inter.wait_response()
    assert response.ephemeral and first in str(response.embeds)
    inter = await st.sim.invoke_command(st.bob, st.channel, "orders")
    assert first not in str((await inter.wait_response()).embeds)

    inter = await st.sim.invoke_command(st.alice, st.channel, "queue")
    text = str((await inter.wait_response()).embeds)
    assert first in text and "position" in text

    inter = await st.sim.invoke_command(st.alice, st.channel, "models list")
    assert "holiday" in str((await inter.wait_response()).embeds)
    inter = await st.sim.invoke_command(st.bob, st.channel, "models delete", {"model": f"m{st.alice.id}"})
    assert "not one of your models" in str((await inter.wait_response()).embeds)
    inter = await st.sim.invoke_command(st.alice, st.channel, "models delete", {"model": f"m{st.alice.id}"})
    assert "holiday" in (await inter.wait_response()).content


async def test_rate_limit(studio: Studio) -> None:
    st = studio
    st.bot.limiter.limit = 3  # type: ignore[union-attr]
    answers = []
    for _ in range(4):
        inter = await st.sim.invoke_command(st.bob, st.channel, "orders")
        answers.append(str((await inter.wait_response()).embeds))
    assert "Slow down" not in answers[2] and "Slow down" in answers[3]


async def test_daily_quota_set_by_an_admin(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    quota = await st.sim.invoke_command(st.admin, st.channel, "admin quota", {"member": st.alice, "daily": 1})
    await quota.wait_response()
    await _queued_render(st, st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "second"})
    msg = await private_answer(inter)
    assert "quota of 1 orders a day" in str(msg.embeds)
    assert st.b.queues.render.depth().backlog == 0
