"""The audit trail of pictures the safety check kept out of Discord (table ``blocked_pictures``)."""

from __future__ import annotations

import hashlib

from sqlmodel import Session, func, select

from storage.models import BlockedPicture


def record_blocked(
    session: Session, *, blob_key: str, order_id: str, guild_id: object, score: float, reason: str
) -> bool:
    """Record one blocked picture; False when it was already recorded (a retried post)."""
    row_id = hashlib.sha256(blob_key.encode()).hexdigest()[:32]
    if session.get(BlockedPicture, row_id) is not None:
        return False
    session.add(
        BlockedPicture(
            id=row_id,
            order_id=order_id,
            guild_id=None if guild_id is None else str(guild_id),
            score=float(score),
            reason=reason[:32],
        )
    )
    session.flush()
    return True


def blocked_count(session: Session, guild_id: object | None = None, *, since: float | None = None) -> int:
    """Pictures blocked in one guild, or everywhere when ``guild_id`` is None; ``since``: from that time on."""
    query = select(func.count()).select_from(BlockedPicture)
    if since is not None:
        query = query.where(BlockedPicture.at >= since)
    if guild_id is not None:
        query = query.where(BlockedPicture.guild_id == str(guild_id))
    return int(session.exec(query).one())
