"""Every admin command: allowed for an admin (audit row + admin log post), refused in code for a member even
when Discord's default_permissions would have let them see it (a server owner can change those)."""

from __future__ import annotations

import pytest
from sqlmodel import select
from studio import Studio, private_answer

from photogen.discord_sim.interactions import SimError
from storage import AuditEntry, order_store, read_session


def _admin_cases(st: Studio) -> list[tuple[str, dict]]:
    return [
        ("admin config", {"admin_role": st.admin_role, "log_channel": st.channel, "max_concurrent": 3}),
        ("admin ban", {"member": st.bob, "reason": "spam"}),
        ("admin unban", {"member": st.bob}),
        ("admin credits", {"member": st.bob, "amount": 5}),
        ("admin quota", {"member": st.bob, "daily": 3}),
        ("admin blocked add", {"word": "nope"}),
        ("admin blocked list", {}),
        ("admin blocked remove", {"word": "nope"}),
        ("admin channels allow", {"channel": st.channel}),
        ("admin channels list", {}),
        ("admin channels remove", {"channel": st.channel}),
        ("admin pause", {}),
        ("admin resume", {}),
        ("admin status", {}),
        ("admin purge", {"member": st.bob}),
        ("admin cancel", {"order": "does-not-exist"}),
    ]


async def test_admin_commands_allowed_for_admin_refused_for_member(studio: Studio) -> None:
    st = studio
    # The member cannot even see the group: default_permissions hides it.
    with pytest.raises(SimError):
        await st.sim.invoke_command(st.alice, st.channel, "admin status")
    for name, options in _admin_cases(st):
        inter = await st.sim.invoke_command(st.alice, st.channel, name, options, check_permissions=False)
        response = await inter.wait_response()
        assert response.ephemeral and "only this server's photogen admins" in str(response.embeds).lower(), (
            name
        )

        inter = await st.sim.invoke_command(st.admin, st.channel, name, options)
        response = await inter.wait_response(5)
        if response.deferred:
            response = await inter.wait_followup()
        text = (response.content + str(response.embeds)).lower()
        if name == "admin cancel":
            assert "no order" in text
        elif name == "admin status":  # a server admin who is not one of the bot's operators
            assert "waiting" in text and "dead letters" not in text and "$" not in text, text
        else:
            assert response.ephemeral and "only this server's" not in text, (name, text)
    with read_session(st.b.engine) as s:
        actions = [a.action for a in s.exec(select(AuditEntry).order_by(AuditEntry.id))]
        user = order_store.get_user(s, st.bob.id)
    assert actions[:3] == ["config", "ban", "unban"]
    assert {
        "credits",
        "quota",
        "blocked add",
        "blocked remove",
        "channels allow",
        "pause",
        "resume",
        "purge",
    } <= set(actions)
    assert user is None  # purged
    # The log channel got one post per audited action, and none pinged anyone.
    logs = [m for m in st.sim.messages(st.channel) if m.content.startswith("🛡️")]
    assert len(logs) >= len(actions) - 1
    assert all((m.allowed_mentions or {}).get("parse") == [] for m in logs)


async def test_admin_effects(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    await (
        await st.sim.invoke_command(st.admin, st.channel, "admin ban", {"member": st.alice})
    ).wait_response()
    inter = await st.sim.invoke_command(st.alice, st.channel, "orders")
    assert "banned" in str((await inter.wait_response()).embeds).lower()
    await (
        await st.sim.invoke_command(st.admin, st.channel, "admin unban", {"member": st.alice})
    ).wait_response()
    await (await st.sim.invoke_command(st.admin, st.channel, "admin pause")).wait_response()
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "x"})
    assert "paused" in str((await private_answer(inter)).embeds).lower()
    await (await st.sim.invoke_command(st.admin, st.channel, "admin resume")).wait_response()
    other = st.sim.add_channel(st.guild, "elsewhere")
    await (
        await st.sim.invoke_command(st.admin, st.channel, "admin channels allow", {"channel": other})
    ).wait_response()
    inter = await st.sim.invoke_command(st.alice, st.channel, "orders")
    assert "can't be used in this channel" in str((await inter.wait_response()).embeds).lower()
    inter = await st.sim.invoke_command(st.alice, other, "orders")
    assert (await inter.wait_response()).embeds[0]["title"] == "Your orders"
    # An admin cancels Alice's order and she gets her credits back.
    inter = await st.sim.invoke_command(st.alice, other, "imagine", {"prompt": "x", "count": 4})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = st.agent.take_render()
    inter = await st.sim.invoke_command(st.admin, st.channel, "admin cancel", {"order": job.order_id})
    assert "4 credit(s) refunded" in (await inter.wait_response()).content
    assert st.credits(st.alice) == st.settings.starting_credits
