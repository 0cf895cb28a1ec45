"""/credits and /admin ledger: a member's balance in one server and their last ledger entries in plain words
(the ledger itself: storage/credits.py). Blocking: called through bot.run_blocking. Each reads one server's
entries only: a member's own server (the command's), an admin's own server (the gate makes them its admin)."""

from __future__ import annotations

import discord

from bot.backends import Backends
from bot.embeds import BLUE, clip
from bot.wording import neutralise
from storage import credits

SHOWN = 10  # the last entries shown


def ledger_of(b: Backends, guild_id: int, user_id: int, limit: int = SHOWN) -> credits.Ledger:
    return credits.ledger(b.engine, guild_id, user_id, limit)


def line_words(line: credits.CreditLine, *, for_admin: bool) -> str:
    """One entry as a sentence: the signed amount, what it was and when (Discord renders the time)."""
    order = f" `{clip(line.order_id, 64)}`" if line.order_id else ""
    reason = neutralise(line.reason, 120) if line.reason else ""
    if line.kind == "starting":
        what = "starting credits"
    elif line.kind == "grant":
        who = f"<@{line.actor}>" if for_admin and line.actor.isdigit() else "an admin"
        what = f"granted by {who}" + (f": {reason}" if reason else "")
    elif line.kind == "opening":
        what = "balance carried over when the credit ledger began"
    elif line.kind == "charge":
        what = f"charged for order{order} ({reason or 'an order'})"
    elif line.kind == "refund":
        what = f"refunded for order{order}: {reason or 'the order ended'}"
    else:  # expiry
        what = f"expired ({reason or 'unspent'})"
    sign = "+" if line.amount >= 0 else "−"
    return f"**{sign}{abs(line.amount)}** {what} · <t:{int(line.at)}:R>"


def ledger_embed(ledger: credits.Ledger, *, title: str, for_admin: bool) -> discord.Embed:
    embed = discord.Embed(title=title, colour=BLUE)
    embed.add_field(name="Balance in this server", value=f"{ledger.balance} credit(s)", inline=False)
    lines = [line_words(line, for_admin=for_admin) for line in ledger.lines]
    while len("\n".join(lines)) > 1024:  # an embed field's limit: drop the oldest lines
        lines.pop()
    empty = (
        "No entries in this server."
        if for_admin
        else "None yet: your starting credits come with your first order."
    )
    embed.add_field(
        name=f"Last {len(lines)} entries" if lines else "Entries",
        value="\n".join(lines) if lines else empty,
        inline=False,
    )
    return embed
