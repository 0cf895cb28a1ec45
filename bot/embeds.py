"""Embeds the bot posts. Everything that echoes member text goes out with allowed_mentions none (set on the
client), and embeds never ping anyway; text is also cut to Discord's limits here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

import discord

ORANGE = discord.Colour.orange()
GREEN = discord.Colour.green()
RED = discord.Colour.red()
BLUE = discord.Colour.blurple()

STATUS_LABEL = {
    "created": "created",
    "queued": "⏳ queued",
    "training": "🏋️ training",
    "trained": "✅ trained",
    "rendering": "🎨 rendering",
    "delivered": "✅ delivered",
    "failed": "❌ failed",
    "cancelled": "🚫 cancelled",
}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_bar(step: int, total: int, width: int = 20) -> str:
    """`▰▰▰▱▱▱ 42%` — plain characters, so it renders the same on every client."""
    if total <= 0:
        return "▱" * width + " 0%"
    frac = min(max(step / total, 0.0), 1.0)
    filled = round(frac * width)
    return "▰" * filled + "▱" * (width - filled) + f" {int(frac * 100)}%"


def human_eta(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    return str(timedelta(seconds=seconds)).removeprefix("0:")


def error_embed(message: str) -> discord.Embed:
    return discord.Embed(description=clip(message, 4000), colour=RED)


def order_status_embed(
    *,
    title: str,
    order_id: str,
    status: str,
    step: int | None = None,
    total: int | None = None,
    eta_s: float | None = None,
    queue_position: int | None = None,
    detail: str | None = None,
    error: str | None = None,
    preview_url: str | None = None,
    notice: str | None = None,
) -> discord.Embed:
    colour = (
        RED if status in ("failed", "cancelled") else GREEN if status in ("trained", "delivered") else BLUE
    )
    embed = discord.Embed(title=clip(title, 256), colour=colour)
    embed.add_field(name="Order", value=f"`{order_id}`", inline=True)
    embed.add_field(name="Status", value=STATUS_LABEL.get(status, status), inline=True)
    if queue_position is not None and status in ("created", "queued"):
        embed.add_field(name="Queue position", value=str(queue_position), inline=True)
    if total:
        embed.add_field(
            name="Progress", value=f"{progress_bar(step or 0, total)} (step {step}/{total})", inline=False
        )
    if eta_s is not None and status not in ("delivered", "failed", "cancelled", "trained"):
        embed.add_field(name="ETA", value=human_eta(eta_s), inline=True)
    if notice and status not in ("delivered", "failed", "cancelled"):
        text = notice.removeprefix("Paused: ")  # the field says it already ("⏸️ Paused: Paused: …" read badly)
        embed.add_field(name="⏸️ Paused", value=clip(text[:1].upper() + text[1:], 1024), inline=False)
    if detail:
        embed.add_field(name="Details", value=clip(detail, 1024), inline=False)
    if error:
        embed.add_field(name="Error", value=clip(error, 1024), inline=False)
    if preview_url:
        embed.set_image(url=preview_url)
    return embed


def result_embed(
    *,
    title: str,
    seed: int | None,
    count: int,
    model: str | None,
    style: str | None,
    rerolled: dict[int, int] | None = None,
) -> discord.Embed:
    """A delivered result: headed with the member's own words; seed, model and style underneath."""
    embed = discord.Embed(title=clip(title, 256), colour=GREEN)
    if seed is not None:
        seeds = f"{seed}" if count <= 1 else f"{seed} (pictures 1–{count}: {seed}–{seed + count - 1})"
        if rerolled:  # an automatic re-roll made these pictures from other seeds: the ones to reuse
            per = [str(rerolled.get(i, seed + i)) for i in range(count)]
            seeds = per[0] if count <= 1 else f"pictures 1–{count}: {', '.join(per)}"
        embed.add_field(name="Seed", value=seeds, inline=True)
    if model:
        embed.add_field(name="Model", value=clip(model, 100), inline=True)
    embed.add_field(name="Style", value=clip(style, 100) if style else "your own prompt", inline=True)
    return embed


def photo_report_embed(
    *,
    accepted: bool,
    summary: str,
    lines: Sequence[tuple[str, bool, str]],
    order_id: str | None = None,
    queue_position: int | None = None,
    eta_s: float | None = None,
    credits_left: int | None = None,
) -> discord.Embed:
    """`lines`: (photo label, ok, reason) for every photo, in upload order."""
    embed = discord.Embed(
        title="Training order accepted" if accepted else "Photos refused — nothing was stored",
        description=clip(summary, 1000),
        colour=GREEN if accepted else RED,
    )
    if order_id:
        embed.add_field(name="Order", value=f"`{order_id}`", inline=True)
    if queue_position is not None:
        embed.add_field(name="Queue position", value=str(queue_position), inline=True)
    if eta_s is not None:
        embed.add_field(name="ETA", value=human_eta(eta_s), inline=True)
    if credits_left is not None:
        embed.add_field(name="Credits left", value=str(credits_left), inline=True)
    good = [f"✅ {clip(label, 60)}" for label, ok, _ in lines if ok]
    bad = [f"❌ {clip(label, 60)}: {clip(reason, 150)}" for label, ok, reason in lines if not ok]
    for name, chunk in (("Accepted", good), ("Rejected", bad)):
        for i, part in enumerate(_chunks(chunk, 1000)):
            embed.add_field(name=name if i == 0 else f"{name} (cont.)", value=part, inline=False)
    return embed


def _chunks(lines: Iterable[str], limit: int) -> list[str]:
    out: list[str] = []
    cur = ""
    for line in lines:
        if cur and len(cur) + len(line) + 1 > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{line}" if cur else line
    if cur:
        out.append(cur)
    return out[:5]
