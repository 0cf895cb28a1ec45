"""/admin deadletters list|redrive over the Discord-compatible server: a server's admins see and redrive only
their server's orders' dead letters, bot operators (BOT_OWNER_IDS) all of them; refusals are ephemeral; a
cancelled order's job is never sent again."""

from __future__ import annotations

import asyncio
import json

from sqlmodel import select
from studio import MANAGE_GUILD, Studio, bot_settings

from photogen.discord_sim.interactions import SimInteraction
from photogen.discord_sim.models import SimChannel, SimMember
from photogen.discord_sim.server import DiscordSim
from storage import AuditEntry, lifecycle, read_session


async def _answer(sim: DiscordSim, inter: SimInteraction) -> tuple[str, bool]:
    """(text, ephemeral) of a command's answer: its response, its followup, or its edited deferred response."""
    response = await inter.wait_response(5)
    if not response.deferred:
        return response.content + str(response.embeds), response.ephemeral
    await sim.wait_until(
        lambda: bool(inter.followups) or (inter.original is not None and not inter.original.loading), 15
    )
    message = inter.followups[0] if inter.followups else inter.original
    assert message is not None
    return message.content + str(message.embeds), response.ephemeral or message.ephemeral


async def _place(st: Studio, member: SimMember, channel: SimChannel, prompt: str) -> str:
    inter = await st.sim.invoke_command(member, channel, "imagine", {"prompt": prompt, "count": 1})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    placed = lifecycle.list_orders(st.b.engine, member.id, limit=10, active_only=False)
    [order] = [o for o in placed if o.params["prompt"] == prompt]
    return order.id


async def test_dead_letters_are_listed_and_redriven_per_server(studio: Studio) -> None:
    st = studio
    other = st.sim.add_guild("Other Club")
    other_channel = st.sim.add_channel(other, "studio")
    other_role = st.sim.add_role(other, "Admins", permissions=MANAGE_GUILD)
    bea = st.sim.add_member(other, "bea", roles=[other_role])  # admin of the other server only
    carl = st.sim.add_member(other, "carl")
    operator = st.sim.add_member(st.guild, "olga")  # a bot operator, no admin role in any server
    st.settings = bot_settings(
        st.sim,
        st.tmp,
        bot_sync_guild_ids=[st.guild.id, other.id],
        queue_max_receives=1,
        bot_owner_ids=[operator.id],
        reconcile_stuck_after_s=3600,  # the reconciler stays out of this test
    )
    await st.restart()
    for member in (st.alice, carl):
        st.seed_model(member)
    mine = await _place(st, st.alice, st.channel, "keeps going")
    cancelled = await _place(st, st.alice, st.channel, "changed my mind")
    theirs = await _place(st, carl, other_channel, "elsewhere")

    render = st.b.queues.render

    def dead_letter_everything() -> dict[str, str]:
        leases = render.receive(max_messages=10, wait_s=5, lease_s=30)
        while len(leases) < 3:
            leases += render.receive(max_messages=10, wait_s=5, lease_s=30)
        for lease in leases:
            render.release(lease)  # the agent died on each
        assert render.receive(max_messages=10, wait_s=0) == []  # over QUEUE_MAX_RECEIVES: all dead-lettered
        return {json.loads(d.body)["order_id"]: d.message_id for d in render.dead_letters()}

    letters = await asyncio.to_thread(dead_letter_everything)
    assert set(letters) == {mine, cancelled, theirs}
    lifecycle.cancel_order(st.b.engine, cancelled, by=str(st.alice.id))

    # Listing: each server's admins see their own server's; the operator sees all; a member is refused.
    listing = "admin deadletters list"
    text, ephemeral = await _answer(st.sim, await st.sim.invoke_command(st.admin, st.channel, listing))
    assert ephemeral and mine in text and cancelled in text and theirs not in text
    assert letters[mine] in text and letters[theirs] not in text
    text, ephemeral = await _answer(st.sim, await st.sim.invoke_command(bea, other_channel, listing))
    assert ephemeral and theirs in text and mine not in text and cancelled not in text
    inter = await st.sim.invoke_command(operator, st.channel, listing, check_permissions=False)
    text, ephemeral = await _answer(st.sim, inter)
    assert (
        ephemeral and all(order in text for order in (mine, cancelled, theirs)) and "Dead letters: 3" in text
    )
    inter = await st.sim.invoke_command(st.alice, st.channel, listing, check_permissions=False)
    text, ephemeral = await _answer(st.sim, inter)
    assert ephemeral and "only this server's photogen admins" in text.lower() and mine not in text

    # Redrive: another server's dead letter does not exist for this admin; a cancelled order's job stays dead.
    redrive = "admin deadletters redrive"
    inter = await st.sim.invoke_command(st.admin, st.channel, redrive, {"message": letters[theirs]})
    text, ephemeral = await _answer(st.sim, inter)
    assert ephemeral and "no dead letter" in text.lower() and theirs not in text
    inter = await st.sim.invoke_command(st.admin, st.channel, redrive, {"message": letters[cancelled]})
    text, ephemeral = await _answer(st.sim, inter)
    assert ephemeral and "cancelled" in text and "not sent again" in text
    assert render.dead_letter_depth() == 3 and render.depth().backlog == 0

    inter = await st.sim.invoke_command(st.admin, st.channel, redrive, {"message": letters[mine]})
    text, ephemeral = await _answer(st.sim, inter)
    assert ephemeral and "back on the render queue" in text and mine in text
    inter = await st.sim.invoke_command(
        operator, st.channel, redrive, {"message": letters[theirs]}, check_permissions=False
    )
    text, ephemeral = await _answer(st.sim, inter)
    assert ephemeral and "back on the render queue" in text

    def requeued() -> list[str]:
        leases = render.receive(max_messages=10, wait_s=2, lease_s=30)
        return sorted(json.loads(lease.body)["order_id"] for lease in leases)

    assert await asyncio.to_thread(requeued) == sorted([mine, theirs])
    assert [d.message_id for d in render.dead_letters()] == [letters[cancelled]]
    with read_session(st.b.engine) as s:
        redrives = [a for a in s.exec(select(AuditEntry)) if a.action == "deadletters redrive"]
    assert len(redrives) == 2 and {a.actor_id for a in redrives} == {str(st.admin.id), str(operator.id)}
