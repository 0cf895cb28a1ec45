"""Removing what members made: one result's pictures, a model, a member's rows in one server or everywhere.
The blobs are the caller's (storage.keys names their prefixes); each function is one transaction."""

from __future__ import annotations

from sqlalchemy import Engine

from storage import order_store as rows
from storage import purge
from storage.db import read_session, transaction


def delete_images(engine: Engine, order_id: str) -> int:
    """Forget the order's picture rows; returns how many."""
    with transaction(engine) as s:
        found = rows.images_of_order(s, order_id)
        for row in found:
            s.delete(row)
        return len(found)


def delete_model(engine: Engine, user_id: int, model_id: str) -> str | None:
    """Delete the member's model row; its name, or None when it is not theirs."""
    with transaction(engine) as s:
        model = rows.get_model(s, model_id)
        if model is None or model.user_id != str(user_id):
            return None
        name = model.name
        rows.delete_model(s, model_id)
        return name


def member_data(engine: Engine, user_id: int, guild_id: int | str) -> purge.MemberData:
    """The ids of what the member has in one server (or everywhere: storage.standing.ALL_GUILDS)."""
    with read_session(engine) as s:
        return purge.member_data(s, user_id, guild_id)


def delete_member_data(engine: Engine, user_id: int, guild_id: int | str) -> dict[str, int]:
    """The member's rows in one server (their standing and member row stay)."""
    with transaction(engine) as s:
        return _receipt(purge.delete_member_data(s, user_id, guild_id))


def forget_member(engine: Engine, user_id: int) -> dict[str, int]:
    """Every row of the member, everywhere (their standing stays: docs/PRIVACY.md)."""
    with transaction(engine) as s:
        return _receipt(rows.delete_user_data(s, user_id))


def _receipt(r: rows.DeletionReceipt) -> dict[str, int]:
    return {
        "orders": r.orders,
        "models": r.models,
        "pictures": r.images,
        "records": r.jobs + r.deliveries + r.events + r.user,
    }
