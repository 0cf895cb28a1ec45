"""/group over the real discord.py client against the sim: every other member asked with a button, rendered
only after all accepted (the RenderJob decoded from the real queue), credits charged once then; refusal,
timeout (across a restart) and withdrawal mid-render end with nothing rendered and the credits back; hostile
input refused privately; the result tells everyone pictured, who see it in /orders and may delete it;
/forget-me of a member pictured removes the picture. The GPU agent's part is tests/bot/agent_part.py (no GPU
here)."""

from __future__ import annotations

import asyncio

import pytest
from studio import Studio, order_rows, private_answer

from bot.errors import Refused
from bot.services import admin, group
from cloud.messages import RenderJob
from photogen.discord_sim.models import SimMember, SimUser, new_snowflake
from storage import consent, keys, order_store, read_session, standing, tombstones, transaction


def _model(st: Studio, member: SimMember, token: str, *, base: str = "tiny-sd", name: str = "me") -> str:
    """A trained model with its own identifier token, as a finished /train leaves it."""
    model_id = f"m{member.id}{token}"
    with transaction(st.b.engine) as s:
        order_store.add_model(
            s,
            user_id=member.id,
            name=name,
            class_word="person",
            subject_token=token,
            base_model=base,
            model_id=model_id,
        )
        order_store.mark_model_ready(s, model_id, keys.model_key(member.id, model_id))
    return model_id


def _carol(st: Studio) -> SimMember:
    return st.sim.add_member(st.guild, "carol")


def _request_for(st: Studio, order_id: str, member: SimMember):
    def match(m) -> bool:
        return f"pg:gc:{order_id}:{member.id}:a" in m.custom_ids() and f"<@{member.id}>" in (m.content or "")

    return match


async def _ask(st: Studio, caller: SimMember, options: dict) -> str:
    inter = await st.sim.invoke_command(caller, st.channel, "group", options)
    status = await inter.wait_original(lambda m: bool(m.embeds) and not m.loading)
    assert "waiting for" in str(status.embeds[0]).lower(), status.embeds
    order_id = next(c.split(":")[2] for c in status.custom_ids() if c.startswith("pg:cancel:"))
    return order_id


def _status(st: Studio, order_id: str) -> str:
    o = orders_get(st, order_id)
    return o.status if o else "gone"


def orders_get(st: Studio, order_id: str):
    with read_session(st.b.engine) as s:
        return order_store.get_order(s, order_id)


def _consents(st: Studio, order_id: str) -> dict[str, str]:
    with read_session(st.b.engine) as s:
        return {r.user_id: r.status for r in consent.consents(s, order_id)}


async def _click(st: Studio, member: SimMember, message, custom_id: str):
    click = await st.sim.click(member, message, custom_id)
    return await click.wait_response()


async def test_group_of_three_renders_after_both_accept_and_tells_everyone(studio: Studio) -> None:
    st = studio
    carol = _carol(st)
    mine, bobs, carols = _model(st, st.alice, "vqzk"), _model(st, st.bob, "bdfg"), _model(st, carol, "lmnp")
    oid = await _ask(st, st.alice, {"member2": st.bob, "member3": carol, "preset": "band", "count": 2})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    carol_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, carol), timeout=10)
    assert [int(u) for u in (bob_req.allowed_mentions or {}).get("users", [])] == [st.bob.id]
    assert _consents(st, oid) == {
        str(st.alice.id): "accepted",
        str(st.bob.id): "asked",
        str(carol.id): "asked",
    }
    start = st.settings.starting_credits
    assert (
        st.credits(st.alice) == start and st.b.queues.render.depth().backlog == 0
    )  # nothing charged or queued

    # Only the member a request names may answer it; the others are refused privately.
    for intruder in (carol, st.alice):
        response = await _click(st, intruder, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
        assert response.ephemeral and "not for you" in str(response.embeds).lower()
    response = await _click(st, st.bob, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
    assert response.type == 7 and "accepted" in response.content  # the request message now says so
    assert st.b.queues.render.depth().backlog == 0 and st.credits(st.alice) == start
    await _click(st, carol, carol_req, f"pg:gc:{oid}:{carol.id}:a")

    job = await asyncio.to_thread(st.agent.take_render)
    assert job.mode == "group" and job.order_id == oid and job.user_id == str(st.alice.id)
    assert job.layout == "stage" and job.count == 2
    assert [(m.user_id, m.model_id, m.subject) for m in job.members] == [
        (str(st.alice.id), mine, "vqzk person"),
        (str(st.bob.id), bobs, "bdfg person"),
        (str(carol.id), carols, "lmnp person"),
    ]
    assert [m.model_key for m in job.members] == [
        keys.model_key(st.alice.id, mine),
        keys.model_key(st.bob.id, bobs),
        keys.model_key(carol.id, carols),
    ]
    cost = st.settings.render_credit_cost * 2 * 3
    assert st.credits(st.alice) == start - cost and st.credits(st.bob) == 0

    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(
        st.channel, lambda m: f"pg:gdel:{oid}:0" in m.custom_ids(), timeout=10
    )
    assert {f"pg:gvar:{oid}:0", f"pg:grr:{oid}:0"} <= set(result.custom_ids())
    assert not any(c.startswith("pg:up:") for c in result.custom_ids())
    mentioned = {int(u) for u in (result.allowed_mentions or {}).get("users", [])}
    assert mentioned == {st.alice.id, st.bob.id, carol.id}
    assert all(f"<@{u}>" in result.content for u in mentioned)

    # Bob sees the picture of him in /orders.
    inter = await st.sim.invoke_command(st.bob, st.channel, "orders")
    listing = await private_answer(inter)
    assert oid in str(listing.embeds) and "group picture of you" in str(listing.embeds)

    # 🔄 keeps the consent: a new group job with the same members, nobody asked again, charged at once.
    asked_before = len(
        [m for m in st.sim.messages(st.channel) if any(c.startswith("pg:gc:") for c in m.custom_ids())]
    )
    response = await _click(st, st.alice, result, f"pg:grr:{oid}:0")
    reroll = await asyncio.to_thread(st.agent.take_render)
    assert reroll.mode == "group" and reroll.order_id != oid and reroll.layout == job.layout
    assert [m.user_id for m in reroll.members] == [m.user_id for m in job.members]
    assert _consents(st, reroll.order_id) == dict.fromkeys(_consents(st, oid), "accepted")
    assert st.credits(st.alice) == start - 2 * cost
    asked_after = len(
        [m for m in st.sim.messages(st.channel) if any(c.startswith("pg:gc:") for c in m.custom_ids())]
    )
    assert asked_after == asked_before
    # V1: variations of picture 1, the same members and consent, starting from that picture.
    await asyncio.to_thread(st.agent.finish_render, reroll)
    await _click(st, st.alice, result, f"pg:gvar:{oid}:0")
    variation = await asyncio.to_thread(st.agent.take_render)
    assert variation.mode == "group" and variation.source_key == keys.render_key(st.alice.id, job.job_id, 0)
    assert [m.subject for m in variation.members] == [m.subject for m in job.members]
    assert st.credits(st.alice) == start - 3 * cost
    # Only the caller re-rolls (it costs their credits); a member pictured may not.
    response = await _click(st, st.bob, result, f"pg:grr:{oid}:0")
    assert response.ephemeral and "only the member who made" in str(response.embeds).lower()

    # A member who turned group requests off since is not pictured again by a re-roll.
    inter = await st.sim.invoke_command(carol, st.channel, "group-requests", {"allow": False})
    await inter.wait_response()
    click = await st.sim.click(st.alice, result, f"pg:grr:{oid}:0")
    assert "can no longer be asked" in str((await private_answer(click)).embeds).lower()
    assert st.b.queues.render.depth().backlog == 0 and st.credits(st.alice) == start - 3 * cost

    # Bob, pictured, deletes the post: pictures and files go, and no re-roll can picture him again.
    response = await _click(st, st.bob, result, f"pg:gdel:{oid}:0")
    assert response.ephemeral and "deleted 2" in response.content.lower()
    await st.sim.wait_until(lambda: st.sim.all_messages[result.id].deleted, 5)
    assert list(st.b.blobs.list(keys.render_prefix(st.alice.id, job.job_id))) == []
    assert _consents(st, oid)[str(st.bob.id)] == "revoked"


async def test_refusal_ends_the_order_with_nothing_rendered_or_charged(studio: Studio) -> None:
    st = studio
    carol = _carol(st)
    _model(st, st.alice, "vqzk"), _model(st, st.bob, "bdfg"), _model(st, carol, "lmnp")
    oid = await _ask(st, st.alice, {"member2": st.bob, "member3": carol, "prompt": "hiking in the Alps"})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    carol_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, carol), timeout=10)
    await _click(st, st.bob, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
    response = await _click(st, carol, carol_req, f"pg:gc:{oid}:{carol.id}:r")
    assert response.type == 7 and "declined" in response.content
    assert _status(st, oid) == "failed" and orders_get(st, oid).error_code == "refused"
    assert st.credits(st.alice) == st.settings.starting_credits
    assert st.b.queues.render.depth().backlog == 0
    # Bob's request loses its buttons; a late click on it changes nothing.
    await st.sim.wait_until(lambda: not st.sim.all_messages[bob_req.id].custom_ids(), 5)
    assert "ended" in st.sim.all_messages[bob_req.id].content


async def test_timeout_ends_the_order_even_across_a_restart(studio: Studio) -> None:
    st = studio
    _model(st, st.alice, "vqzk"), _model(st, st.bob, "bdfg")
    st.settings = st.settings.model_copy(update={"group_consent_timeout_s": 1.5})
    await st.restart()
    oid = await _ask(st, st.alice, {"member2": st.bob, "preset": "team"})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    await st.bot.close()  # the bot is down when the time runs out
    await asyncio.sleep(1.6)
    assert _status(st, oid) == "created"
    await st.start()
    await st.sim.wait_until(lambda: _status(st, oid) == "failed", 10)
    order = orders_get(st, oid)
    assert order.error_code == "consent_timeout" and "in time" in order.error_message
    assert _consents(st, oid)[str(st.bob.id)] == "expired"
    assert st.credits(st.alice) == st.settings.starting_credits and st.b.queues.render.depth().backlog == 0
    await st.sim.wait_until(lambda: not st.sim.all_messages[bob_req.id].custom_ids(), 5)
    # A click after the deadline cannot start it.
    assert "ended" in st.sim.all_messages[bob_req.id].content


async def test_withdrawal_mid_render_cancels_and_refunds_once(studio: Studio) -> None:
    st = studio
    _model(st, st.alice, "vqzk"), _model(st, st.bob, "bdfg")
    oid = await _ask(st, st.alice, {"member2": st.bob, "prompt": "at a picnic", "count": 1})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    await _click(st, st.bob, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
    job = await asyncio.to_thread(st.agent.take_render)
    start = st.settings.starting_credits
    assert st.credits(st.alice) == start - 2
    st.agent.emit(job, "started")
    await st.sim.wait_until(lambda: _status(st, oid) == "rendering", 5)

    accepted = st.sim.all_messages[bob_req.id]
    response = await _click(st, st.bob, accepted, f"pg:gc:{oid}:{st.bob.id}:w")
    assert response.type == 7 and "withdrew" in response.content
    assert _status(st, oid) == "cancelled" and st.credits(st.alice) == start
    assert tombstones.is_cancelled(st.b.blobs, oid)  # the agent stops and uploads nothing
    # The agent's late done changes nothing: no result posted, no second refund.
    await asyncio.to_thread(st.agent.finish_render, job)
    await asyncio.sleep(1.0)
    assert not any(c.startswith("pg:gdel:") for m in st.sim.messages(st.channel) for c in m.custom_ids())
    assert _status(st, oid) == "cancelled" and st.credits(st.alice) == start


async def test_hostile_members_are_refused_privately_and_nothing_is_written(studio: Studio) -> None:
    st = studio
    _model(st, st.alice, "vqzk")
    carol = _carol(st)
    robot = st.sim.add_member(st.guild, SimUser(new_snowflake(), "robot", bot=True))
    stranger = SimUser(new_snowflake(), "eve")  # not a member of this server

    async def refused(options: dict) -> str:
        inter = await st.sim.invoke_command(st.alice, st.channel, "group", {"prompt": "x", **options})
        return str((await private_answer(inter)).embeds).lower()

    # Discord's options allow 3 others; the check holds anyway.
    with pytest.raises(Refused, match="at most 4"):
        group.check_picked(st.alice.id, [group.Picked(n, False, True) for n in (11, 12, 13, 14)])
    assert "you are in the picture already" in await refused({"member2": st.alice})
    assert "is a bot" in await refused({"member2": robot})
    assert "not a member of this server" in await refused({"member2": stranger})
    assert "named twice" in await refused({"member2": st.bob, "member3": st.bob})
    assert "has no trained model" in await refused({"member2": st.bob})
    _model(st, st.bob, "bdfg", base="other-base")
    assert "different base model" in await refused({"member2": st.bob})
    _model(st, st.bob, "bdfz")
    with transaction(st.b.engine) as s:
        standing.set_ban(s, st.guild.id, st.bob.id, True, "spam in #general")
    text = await refused({"member2": st.bob})
    assert "cannot take part" in text and "spam" not in text  # the ban's reason is not the caller's business
    _model(st, carol, "lmnp")
    inter = await st.sim.invoke_command(carol, st.channel, "group-requests", {"allow": False})
    await inter.wait_response()
    assert "turned off group picture requests" in await refused({"member2": carol})
    dave = st.sim.add_member(st.guild, "dave")
    _model(st, dave, "zxcv")
    forget = await st.sim.invoke_command(dave, st.channel, "forget-me")
    confirm = (await forget.wait_response()).message
    done = await st.sim.click(dave, confirm, f"pg:forget:{dave.id}")
    await st.sim.wait_until(lambda: bool(done.followups), 10)
    assert "cannot be asked right now" in await refused({"member2": dave})  # their data is being deleted
    assert order_rows(st.b) == 0 and st.b.queues.render.depth().backlog == 0
    assert not any(c.startswith("pg:gc:") for m in st.sim.messages(st.channel) for c in m.custom_ids())


async def test_forget_me_of_a_pictured_member_removes_the_group_picture(studio: Studio) -> None:
    st = studio
    _model(st, st.alice, "vqzk"), _model(st, st.bob, "bdfg")
    oid = await _ask(st, st.alice, {"member2": st.bob, "preset": "eiffel", "count": 1})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    await _click(st, st.bob, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
    job: RenderJob = await asyncio.to_thread(st.agent.take_render)
    assert job.layout == "row"
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(
        st.channel, lambda m: f"pg:gdel:{oid}:0" in m.custom_ids(), timeout=10
    )

    inter = await st.sim.invoke_command(st.bob, st.channel, "forget-me")
    confirm = (await inter.wait_response()).message
    click = await st.sim.click(st.bob, confirm, f"pg:forget:{st.bob.id}")
    await click.wait_response()
    await st.sim.wait_until(lambda: st.sim.all_messages[result.id].deleted, 10)
    assert list(st.b.blobs.list(keys.render_prefix(st.alice.id, job.job_id))) == []
    with read_session(st.b.engine) as s:
        assert order_store.images_of_order(s, oid) == []
        assert [r.user_id for r in consent.consents(s, oid)] == [
            str(st.alice.id)
        ]  # Bob's consent row is gone
        order, (job_row,) = order_store.get_order(s, oid), order_store.jobs_of_order(s, oid)
        assert str(st.bob.id) not in str(order.params) and str(st.bob.id) not in str(job_row.payload)
    # Alice's order stays hers (delivered), but it can never be made again without Bob.
    assert _status(st, oid) == "delivered"
    rules = admin.guild_rules(st.b, st.guild.id)
    with pytest.raises(Refused, match="withdrew"):
        group.place_followup(st.b, oid, 0, "rr", user_id=st.alice.id, channel_id=st.channel.id, rules=rules)


async def test_failure_refunds_and_a_ban_after_asking_ends_it_without_telling_why(studio: Studio) -> None:
    st = studio
    carol = _carol(st)
    _model(st, st.alice, "vqzk"), _model(st, st.bob, "bdfg"), _model(st, carol, "lmnp")
    start = st.settings.starting_credits
    oid = await _ask(st, st.alice, {"member2": st.bob, "prompt": "on a boat", "count": 1})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    await _click(st, st.bob, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
    job = await asyncio.to_thread(st.agent.take_render)
    assert st.credits(st.alice) == start - 2
    await asyncio.to_thread(st.agent.fail, job)
    await st.sim.wait_until(lambda: _status(st, oid) == "failed", 5)
    assert st.credits(st.alice) == start  # refunded once, by the ordinary failed-event path

    oid = await _ask(st, st.alice, {"member2": carol, "prompt": "on a boat", "count": 1})
    carol_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, carol), timeout=10)
    with transaction(st.b.engine) as s:
        standing.set_ban(s, st.guild.id, carol.id, True, "spam in #general")
    await _click(st, carol, carol_req, f"pg:gc:{oid}:{carol.id}:a")
    await st.sim.wait_until(lambda: _status(st, oid) == "failed", 5)
    order = orders_get(st, oid)
    status_message = st.sim.all_messages[int(order.status_message_id)]
    await st.sim.wait_until(lambda: "can no longer" in str(st.sim.all_messages[status_message.id].embeds), 5)
    shown = str(st.sim.all_messages[status_message.id].embeds).lower()
    assert "spam" not in shown and "ban" not in shown
    assert st.credits(st.alice) == start and st.b.queues.render.depth().backlog == 0


async def test_a_member_deleting_their_model_mid_render_ends_the_picture_and_a_cancel_closes_requests(
    studio: Studio,
) -> None:
    st = studio
    carol = _carol(st)
    _model(st, st.alice, "vqzk")
    bobs, _ = _model(st, st.bob, "bdfg"), _model(st, carol, "lmnp")
    start = st.settings.starting_credits
    oid = await _ask(st, st.alice, {"member2": st.bob, "prompt": "in a cafe", "count": 1})
    bob_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, st.bob), timeout=10)
    await _click(st, st.bob, bob_req, f"pg:gc:{oid}:{st.bob.id}:a")
    job = await asyncio.to_thread(st.agent.take_render)
    inter = await st.sim.invoke_command(st.bob, st.channel, "models delete", {"model": bobs})
    await private_answer(inter)
    assert _status(st, oid) == "cancelled" and orders_get(st, oid).error_code == "revoked"
    assert st.credits(st.alice) == start and tombstones.is_cancelled(st.b.blobs, oid)
    assert job.members[1].model_id == bobs

    # The caller cancels a request still waiting: a late Accept starts nothing.
    oid = await _ask(st, st.alice, {"member2": carol, "prompt": "in a cafe", "count": 1})
    carol_req = await st.sim.wait_for_message(st.channel, _request_for(st, oid, carol), timeout=10)
    inter = await st.sim.invoke_command(st.alice, st.channel, "cancel", {"order": oid})
    await inter.wait_response()
    response = await _click(st, carol, carol_req, f"pg:gc:{oid}:{carol.id}:a")
    assert response.ephemeral and "ended" in str(response.embeds).lower()
    assert _status(st, oid) == "cancelled" and st.b.queues.render.depth().backlog == 0
    assert st.credits(st.alice) == start
