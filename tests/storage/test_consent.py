"""storage/consent.py on a migrated SQLite store: only an open request changes, a deadline is final, only an
accepted member withdraws, the "no group requests" choice is per server."""

from __future__ import annotations

from sqlalchemy import Engine

from storage import consent, order_store, read_session, transaction


def _order(engine: Engine, expires_at: float) -> str:
    with transaction(engine) as s:
        order = order_store.create_order(s, user_id=1, kind="render", guild_id=9)
        consent.record_request(
            s,
            order.id,
            guild_id=9,
            caller_id=1,
            members=[(1, "m1"), (2, "m2"), (3, "m3")],
            expires_at=expires_at,
        )
        return order.id


def test_answers_deadline_and_withdrawal(engine: Engine) -> None:
    oid = _order(engine, expires_at=1000.0)
    with transaction(engine) as s:
        assert consent.answer(s, oid, 4, True).status is None  # not asked in this order
        first = consent.answer(s, oid, 2, True, at=10.0)
        assert first.changed and first.status == "accepted" and not first.all_accepted
        assert not consent.answer(s, oid, 2, False, at=11.0).changed  # an answer is final
        assert not consent.revoke(s, oid, 3)  # never accepted: nothing to withdraw
        assert consent.expire_due(s, at=999.0) == []
        assert consent.expire_due(s, at=1000.0) == [oid]
        late = consent.answer(s, oid, 3, True, at=1001.0)
        assert not late.changed and late.status == "expired" and not late.all_accepted
        assert consent.revoke(s, oid, 2) and not consent.revoke(s, oid, 2)
    with read_session(engine) as s:
        assert [(r.user_id, r.position, r.status) for r in consent.consents(s, oid)] == [
            ("1", 0, "accepted"),
            ("2", 1, "revoked"),
            ("3", 2, "expired"),
        ]
        assert consent.pictured_order_ids(s, 2) == [oid] and consent.pictured_order_ids(s, 1) == []


def test_no_group_requests_is_per_server_and_forgetting_drops_the_rows(engine: Engine) -> None:
    oid = _order(engine, expires_at=1000.0)
    with transaction(engine) as s:
        assert consent.takes_requests(s, 9, 2)
        consent.set_takes_requests(s, 9, 2, False)
        assert not consent.takes_requests(s, 9, 2) and consent.takes_requests(s, 8, 2)
        assert consent.delete_member(s, 2) == 1
        assert consent.delete_member(s, 1) == 2  # the caller's order: every row of it
    with read_session(engine) as s:
        assert consent.consents(s, oid) == []
