"""Deleting a member's data: in one server (an admin's /admin purge) or everywhere (/forget-me, a bot owner's
/owner purge). Blocking; called through bot.run_blocking.

Open orders in scope are cancelled (and refunded) first, then the blobs (they are the personal data), then the
rows. The member's standing (credits, ban, quota use) is never deleted: see docs/PRIVACY.md.
"""

from __future__ import annotations

from bot.backends import Backends
from bot.services import deletion
from storage import keys, lifecycle
from storage.standing import ALL_GUILDS


def purge_member(b: Backends, user_id: int, guild_id: int | str, *, by: str) -> dict[str, int]:
    """``guild_id`` ALL_GUILDS: everything of the member everywhere, their member row included."""
    everywhere = guild_id == ALL_GUILDS
    for o in lifecycle.list_orders(b.engine, user_id, limit=1000, active_only=True):
        in_scope = everywhere or str(o.guild_id) == str(guild_id)
        if in_scope and lifecycle.cancel_order(b.engine, o.id, by=by) is not None:
            deletion.order_cancelled(b, o)  # the agent working on it stops and uploads nothing more
    data = lifecycle.member_data(b.engine, user_id, guild_id)
    prefixes = [keys.preview_prefix(user_id, j) for j in data.job_ids] + [
        keys.checkpoint_prefix(user_id, j) for j in data.job_ids
    ]
    if everywhere:
        prefixes.append(keys.user_prefix(user_id))
    else:
        prefixes += [keys.photos_prefix(user_id, o) for o in data.train_order_ids]
        prefixes += [keys.render_prefix(user_id, j) for j in data.job_ids]
        prefixes += [keys.model_prefix(user_id, m) for m in data.model_ids]
    files = sum(b.blobs.delete_prefix(prefix) for prefix in prefixes)
    if not everywhere:  # (forgetting schedules its own sweep of the whole prefix: services/member_orders.py)
        deletion.resweep(b, f"purge-{guild_id}-{user_id}", prefixes)
    receipt = (
        lifecycle.forget_member(b.engine, user_id)
        if everywhere
        else lifecycle.delete_member_data(b.engine, user_id, guild_id)
    )
    return {"files": files, **receipt}
