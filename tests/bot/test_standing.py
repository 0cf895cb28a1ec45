"""Standing per server (issue 11, "Trust"): an admin's power ends at their own server; cross-server actions are
the bot owners' (BOT_OWNER_IDS), audited; /forget-me and bans never refill credits or quota.

Two guilds on the real discord_sim, driven with the real discord.py client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlmodel import select
from studio import Studio, answer, bot_settings

from photogen.discord_sim.models import SimChannel, SimGuild, SimMember
from storage import AuditEntry, credits, keys, order_store, read_session, standing, tombstones


@dataclass
class SecondServer:
    guild: SimGuild
    channel: SimChannel
    mallory: SimMember  # owner (so admin) of the second server, member of the first
    alice: SimMember  # Alice, who also joined the second server


async def _second_server(st: Studio, mallory_in_first: SimMember, **settings: object) -> SecondServer:
    """Mallory creates his own server, adds the bot and invites Alice; the bot restarts with its commands
    synced there too."""
    guild = st.sim.add_guild("Mallory's Den", owner=mallory_in_first.user)
    channel = st.sim.add_channel(guild, "den")
    alice = st.sim.add_member(guild, st.alice.user)
    st.settings = st.settings.model_copy(update={"bot_sync_guild_ids": [st.guild.id, guild.id], **settings})
    await st.restart()
    return SecondServer(guild, channel, st.sim.member(guild, mallory_in_first.user.id), alice)


async def _run(st: Studio, member: SimMember, channel: SimChannel, name: str, options: dict | None = None):
    """The (first) answer to a command; a deferred command's follow-up."""
    inter = await st.sim.invoke_command(member, channel, name, options or {}, check_permissions=False)
    response = await inter.wait_response(5)
    if response.deferred:
        response = await inter.wait_followup()
    return response


def _text(response) -> str:
    return (response.content + str(response.embeds)).lower()


async def _imagine(st: Studio, member: SimMember, channel: SimChannel, **options) -> str:
    """The status text /imagine ends on (queued, or the refusal)."""
    inter = await st.sim.invoke_command(member, channel, "imagine", {"prompt": "portrait", **options})
    message = await answer(inter)  # a refusal replaces the public placeholder with a private answer
    return (str(message.embeds) + message.content).lower()


async def test_a_banned_member_admin_of_his_own_server_cannot_touch_the_first(studio: Studio) -> None:
    """The attack from issue 11, reproduced exactly: banned in the first server, Mallory creates a second
    (he owns it, so he is its admin), adds the bot, unbans himself, grants himself 100,000 credits, then purges
    and bans Alice, who shares that server. Nothing of it may reach the first server."""
    st = studio
    mallory = st.sim.add_member(st.guild, "mallory")
    alice_model = st.seed_model(st.alice, "alice", trained_in=st.guild)
    alice_blobs = sorted(st.b.blobs.list(keys.user_prefix(st.alice.id)))
    assert len(alice_blobs) == 2  # her training photo and her weights
    ban = await _run(st, st.admin, st.channel, "admin ban", {"member": mallory, "reason": "spam"})
    assert "banned" in _text(ban)
    den = await _second_server(st, mallory)

    for name, options in [
        ("admin unban", {"member": den.mallory}),
        ("admin credits", {"member": den.mallory, "amount": 100000}),
        ("admin purge", {"member": den.alice}),
        ("admin ban", {"member": den.alice, "reason": "revenge"}),
    ]:
        response = await _run(st, den.mallory, den.channel, name, options)
        assert response.ephemeral and "only this server's" not in _text(response), (name, _text(response))

    # The first server: Mallory is still banned there and has no credits there; Alice keeps everything.
    refused = await _run(st, mallory, st.channel, "orders")
    assert refused.ephemeral and "banned" in _text(refused) and "spam" in _text(refused)
    assert st.credits(mallory) == 0
    assert sorted(st.b.blobs.list(keys.user_prefix(st.alice.id))) == alice_blobs
    with read_session(st.b.engine) as s:
        assert [m.id for m in order_store.models_of_user(s, st.alice.id)] == [alice_model]
        assert len(order_store.orders_of_user(s, st.alice.id)) == 1
    assert "queued" in await _imagine(st, st.alice, st.channel, model=alice_model)
    job = await asyncio.to_thread(st.agent.take_render)
    assert job.model_keys == [keys.model_key(st.alice.id, alice_model)]

    # His own server is his to run: there he is unbanned with his credits, and Alice is banned.
    assert st.credits(den.mallory, den.guild) == 100000
    refused = await _run(st, den.alice, den.channel, "orders")
    assert refused.ephemeral and "banned" in _text(refused)
    # Nor can he cancel an order of the first server from his.
    response = await _run(st, den.mallory, den.channel, "admin cancel", {"order": job.order_id})
    assert response.ephemeral and "no order" in _text(response)
    with read_session(st.b.engine) as s:
        assert order_store.get_order(s, job.order_id).status == "queued"  # type: ignore[union-attr]


async def test_admin_purge_deletes_only_what_was_made_in_that_server(studio: Studio) -> None:
    st = studio
    mallory = st.sim.add_member(st.guild, "mallory")
    den = await _second_server(st, mallory)
    first = st.seed_model(st.alice, "first", trained_in=st.guild)
    second = st.seed_model(st.alice, "second", trained_in=den.guild)

    response = await _run(st, st.admin, st.channel, "admin purge", {"member": st.alice})
    assert response.ephemeral and "files=2" in _text(response) and "models=1" in _text(response)
    with read_session(st.b.engine) as s:
        assert [m.id for m in order_store.models_of_user(s, st.alice.id)] == [second]
        assert {o.guild_id for o in order_store.orders_of_user(s, st.alice.id)} == {str(den.guild.id)}
    left = set(st.b.blobs.list(keys.user_prefix(st.alice.id)))
    assert keys.model_key(st.alice.id, second) in left
    assert not any(first in key for key in left)


async def test_cross_server_actions_are_the_bot_owners_alone_and_audited(studio: Studio) -> None:
    st = studio
    bot_owner = st.sim.member(st.guild, st.sim.owner.id)  # owns the first server, listed in BOT_OWNER_IDS
    mallory = st.sim.add_member(st.guild, "mallory")
    den = await _second_server(st, mallory, bot_owner_ids=[bot_owner.user.id])
    st.seed_model(st.alice, "first", trained_in=st.guild)
    st.seed_model(st.alice, "second", trained_in=den.guild)

    # A server's admins (even the owner of a server) are refused, ephemerally, and nothing changes.
    for member, channel in ((den.mallory, den.channel), (st.admin, st.channel)):
        for name in ("owner ban", "owner unban", "owner purge"):
            response = await _run(st, member, channel, name, {"member": st.alice})
            assert response.ephemeral and "only the bot's owners" in _text(response), name
    assert len(list(st.b.blobs.list(keys.user_prefix(st.alice.id)))) == 4

    # The bot owner bans Mallory everywhere: refused even in the server he owns.
    response = await _run(st, bot_owner, st.channel, "owner ban", {"member": mallory, "reason": "raids"})
    assert response.ephemeral and "every server" in _text(response)
    refused = await _run(st, den.mallory, den.channel, "orders")
    assert refused.ephemeral and "banned" in _text(refused) and "raids" in _text(refused)
    # …and Mallory's own-server unban does not lift it.
    await _run(st, den.mallory, den.channel, "admin unban", {"member": den.mallory})
    assert "banned" in _text(await _run(st, den.mallory, den.channel, "orders"))
    await _run(st, bot_owner, st.channel, "owner unban", {"member": mallory})
    assert (await _run(st, den.mallory, den.channel, "orders")).embeds[0]["title"] == "Your orders"

    # The bot owner's purge reaches every server.
    response = await _run(st, bot_owner, st.channel, "owner purge", {"member": st.alice})
    assert response.ephemeral and "everywhere" in _text(response) and "models=2" in _text(response)
    assert list(st.b.blobs.list(keys.user_prefix(st.alice.id))) == []
    with read_session(st.b.engine) as s:
        assert order_store.models_of_user(s, st.alice.id) == []
        audit = [
            (a.action, a.actor_id, a.guild_id) for a in s.exec(select(AuditEntry).order_by(AuditEntry.id))
        ]
    owner_rows = [row for row in audit if row[0].startswith("owner ")]
    assert owner_rows == [
        ("owner ban", str(bot_owner.user.id), None),
        ("owner unban", str(bot_owner.user.id), None),
        ("owner purge", str(bot_owner.user.id), None),
    ]


async def test_forget_me_is_not_a_refill(studio: Studio) -> None:
    st = studio
    # the second deletion after a forget comes quickly here; new orders wait for it (bot/services/deletion.py)
    st.settings = bot_settings(st.sim, st.tmp, bot_sync_guild_ids=[st.guild.id], deletion_resweep_s=0.5)
    await st.restart()
    start = st.settings.starting_credits
    st.seed_model(st.alice)
    await _run(st, st.admin, st.channel, "admin quota", {"member": st.alice, "daily": 2})
    assert "queued" in await _imagine(st, st.alice, st.channel, count=4)
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(st.agent.finish_render, job)
    await st.sim.wait_for_message(st.channel, lambda m: "pg:up:" in str(m.custom_ids()))
    assert st.credits(st.alice) == start - 4

    inter = await st.sim.invoke_command(st.alice, st.channel, "forget-me")
    assert "forgetting never refills" in str((await inter.wait_response()).embeds)  # says what is kept
    confirm = await inter.wait_original(lambda m: True)
    receipt = await (await st.sim.click(st.alice, confirm, f"pg:forget:{st.alice.id}")).wait_followup()
    assert "orders" in str(receipt.embeds)
    with read_session(st.b.engine) as s:
        assert (
            order_store.get_user(s, st.alice.id) is None and order_store.orders_of_user(s, st.alice.id) == []
        )
        kept = standing.get_standing(s, st.guild.id, st.alice.id)
    # What stays holds no personal data: numbers keyed by the member's id.
    assert kept is not None and st.credits(st.alice) == start - 4
    # Her ledger stays too: the entries hold amounts and the system's words, nothing of hers.
    lines = credits.ledger(st.b.engine, st.guild.id, st.alice.id).lines
    assert [(x.kind, x.amount) for x in lines] == [("charge", -4), ("starting", start)]
    assert kept.daily_quota == 2 and len(kept.order_times) == 1

    # The next order (once the second deletion ran) is charged from what was left, not from fresh starting
    # credits, and counts against the same day's quota.
    await st.sim.wait_until(lambda: not tombstones.sweep_pending(st.b.blobs, f"member-{st.alice.id}"), 10)
    st.seed_model(st.alice)
    assert "queued" in await _imagine(st, st.alice, st.channel, count=1)
    await asyncio.to_thread(st.agent.take_render)
    assert st.credits(st.alice) == start - 5
    assert "quota of 2 orders a day" in await _imagine(st, st.alice, st.channel)


async def test_ban_and_unban_never_change_credits(studio: Studio) -> None:
    st = studio
    start = st.settings.starting_credits
    # Bob never ordered: a ban and an unban must not leave him with 0 credits.
    for name in ("admin ban", "admin unban"):
        await _run(st, st.admin, st.channel, name, {"member": st.bob})
    st.seed_model(st.bob)
    assert "queued" in await _imagine(st, st.bob, st.channel, count=1)
    assert st.credits(st.bob) == start - 1
    # Alice, with a balance, keeps it exactly through a ban and an unban.
    await _run(st, st.admin, st.channel, "admin credits", {"member": st.alice, "amount": 7})
    for name in ("admin ban", "admin unban"):
        await _run(st, st.admin, st.channel, name, {"member": st.alice})
    assert st.credits(st.alice) == 7
    st.seed_model(st.alice)
    assert "queued" in await _imagine(st, st.alice, st.channel, count=1)
    assert st.credits(st.alice) == 7 + start - 1  # her starting credits, granted at her first order
