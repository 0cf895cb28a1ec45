"""/credits and /admin ledger over the Discord sim (issue 15 item 2): a member sees their balance in this server
and its last entries in plain words, privately; an admin sees a member's ledger in their own server only; the
periodic work expires unspent old grants (CREDITS_EXPIRE_DAYS)."""

from __future__ import annotations

import asyncio
import time

from studio import Studio, private_answer
from test_standing import _imagine, _run, _second_server, _text

from storage import credits, read_session, transaction


async def _credits(st: Studio, member, channel) -> str:  # type: ignore[no-untyped-def]
    inter = await st.sim.invoke_command(member, channel, "credits")
    return _text(await private_answer(inter))


async def test_credits_shows_the_balance_and_last_entries_in_plain_words(studio: Studio) -> None:
    st = studio
    start, cost = st.settings.starting_credits, st.settings.render_credit_cost
    assert "none yet" in await _credits(st, st.alice, st.channel)
    st.seed_model(st.alice)
    assert "queued" in await _imagine(st, st.alice, st.channel, count=2)
    job = await asyncio.to_thread(st.agent.take_render)
    await _run(
        st, st.admin, st.channel, "admin credits", {"member": st.alice, "amount": 7, "reason": "a prize"}
    )
    cancelled = await _run(st, st.alice, st.channel, "cancel", {"order": job.order_id})
    assert f"{2 * cost} credit(s) refunded" in _text(cancelled)

    shown = await _credits(st, st.alice, st.channel)
    assert f"{start + 7} credit(s)" in shown
    assert f"**+{start}** starting credits" in shown
    assert f"**−{2 * cost}** charged for order `{job.order_id}` (2 pictures)" in shown
    assert "**+7** granted by an admin: a prize" in shown
    assert f"**+{2 * cost}** refunded for order `{job.order_id}`: cancelled by the member" in shown
    assert shown.index("refunded") < shown.index("granted") < shown.index("charged")  # the newest first
    assert str(st.admin.id) not in shown  # which admin is the admins' business


async def test_an_admin_sees_a_members_ledger_of_their_own_server_only(studio: Studio) -> None:
    st = studio
    mallory = st.sim.add_member(st.guild, "mallory")
    den = await _second_server(st, mallory)
    await _run(
        st, st.admin, st.channel, "admin credits", {"member": st.alice, "amount": 11, "reason": "club"}
    )
    await _run(st, den.mallory, den.channel, "admin credits", {"member": den.alice, "amount": 3})

    # Ada, admin of the first server, sees Alice's entries there, with who granted them.
    first = await _run(st, st.admin, st.channel, "admin ledger", {"member": st.alice})
    assert first.ephemeral
    assert "11 credit(s)" in _text(first) and "club" in _text(first) and f"<@{st.admin.id}>" in _text(first)
    assert "**+3**" not in _text(first)
    # Mallory, admin of his own server, sees the entries of his server and nothing of the first.
    den_view = await _run(st, den.mallory, den.channel, "admin ledger", {"member": den.alice})
    assert den_view.ephemeral and "3 credit(s)" in _text(den_view) and "**+3**" in _text(den_view)
    assert "**+11**" not in _text(den_view) and "club" not in _text(den_view)
    # Alice sees each server's own balance where she asks.
    assert "11 credit(s)" in await _credits(st, st.alice, st.channel)
    assert "3 credit(s)" in await _credits(st, den.alice, den.channel)
    # A member is not an admin: /admin ledger is refused to Bob.
    refused = await _run(st, st.bob, st.channel, "admin ledger", {"member": st.alice})
    assert refused.ephemeral and "club" not in _text(refused)


async def test_the_periodic_work_expires_unspent_old_grants(studio: Studio) -> None:
    st = studio
    with transaction(st.b.engine) as s:
        credits.grant(s, st.guild.id, st.alice.id, 9, actor=st.admin.id, at=time.time() - 3 * 86400)
        credits.grant(s, st.guild.id, st.bob.id, 4, actor=st.admin.id)  # recent: kept
    assert st.credits(st.alice) == 9
    st.settings = st.settings.model_copy(update={"credits_expire_days": 2})
    await st.restart()
    await st.sim.wait_until(lambda: st.credits(st.alice) == 0, 10)
    assert st.credits(st.bob) == 4
    with read_session(st.b.engine) as s:
        assert credits.balance(s, st.guild.id, st.alice.id) == 0
    assert "**−9** expired (unspent for 2 days)" in await _credits(st, st.alice, st.channel)
