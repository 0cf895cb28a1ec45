"""Likeness of delivered pictures, on the bot's side: the scores an agent reports in a render's done event are
stored with each picture, shown in plain words with it, summed up for the admin dashboard, and after
LIKENESS_ADVICE_AFTER weak pictures of one model its owner is told what to change (once)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, func, select

from cloud.messages import Event, LikenessScore
from storage import orders
from storage.models import Image, Order, TrainedModel

FAILING = ("weak", "copy", "no_face")
_WORDS = {
    "strong": "strong",
    "fair": "fair",
    "weak": "weak",
    "copy": "too close to one of your photos",
    "no_face": "no face found",
}


def score_of(event: Event, index: int) -> LikenessScore | None:
    scores = event.likeness or []
    return scores[index] if index < len(scores) else None


def image_fields(event: Event, index: int) -> dict[str, Any]:
    """The likeness columns of picture ``index`` of a done event (all None when it was not scored)."""
    score = score_of(event, index)
    if score is None:
        return {}
    return {"likeness_verdict": score.verdict, "likeness_score": score.score, "likeness_tries": score.tries}


def payload(event: Event) -> list[dict[str, Any]]:
    """What the result post needs to say it (outbox payloads are JSON)."""
    return [s.model_dump() for s in event.likeness or []]


def words(scores: list[dict[str, Any]]) -> str:
    """'Looks like you: strong (0.71)' for one picture, numbered for several; '' when nothing was scored."""
    if not scores:
        return ""
    parts = []
    for n, s in enumerate(scores, 1):
        text = _WORDS.get(s.get("verdict", ""), "unknown")
        if s.get("score") is not None and s.get("verdict") != "no_face":
            text += f" ({s['score']:.2f})"
        parts.append(text if len(scores) == 1 else f"{n}: {text}")
    line = "Looks like you: " + " · ".join(parts)
    rerolled = sum(max(0, int(s.get("tries", 1)) - 1) for s in scores)
    if rerolled:
        line += f" — re-rendered {rerolled}× automatically to get closer, at no charge"
    return line


def advice(session: Session, order: Order, event: Event, after: int) -> orders.NewDelivery | None:
    """The advice post, when this event's pictures take the model's failing count to ``after`` or past it."""
    failing_now = [s.verdict for s in event.likeness or [] if s.verdict in FAILING]
    if not failing_now or not order.model_id:
        return None
    before = _failing_count(session, order.model_id)
    if not before < after <= before + len(failing_now):
        return None
    model = session.get(TrainedModel, order.model_id)
    copies = sum(1 for v in failing_now if v == "copy") * 2 > len(failing_now)
    return orders.NewDelivery(
        "likeness_advice",
        {
            "channel_id": order.channel_id,
            "user_id": order.user_id,
            "model_name": model.name if model else "",
            "failing": before + len(failing_now),
            "copies": copies,
        },
    )


def advice_text(p: dict[str, Any]) -> str:
    name = p.get("model_name") or "your model"
    if p.get("copies"):
        return (
            f"{p.get('failing')} pictures of **{name}** came out as near-copies of your training photos. "
            "Train again with more varied photos: different days, places, clothes and angles."
        )
    return (
        f"{p.get('failing')} pictures of **{name}** did not look much like you. What helps: train again with "
        "more photos (10-20), in good even light, face clearly visible, and only you in each photo."
    )


def _failing_count(session: Session, model_id: str) -> int:
    query = (
        select(func.count())
        .select_from(Image)
        .join(Order, col(Order.id) == col(Image.order_id))
        .where(Order.model_id == model_id, col(Image.likeness_verdict).in_(FAILING))
    )
    return int(session.exec(query).one())


# --- the admin dashboard --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """Scored pictures of one server or one model: how many of each verdict, and the score quartiles."""

    key: str
    label: str
    verdicts: dict[str, int]
    quartiles: tuple[float, float, float] | None

    @property
    def total(self) -> int:
        return sum(self.verdicts.values())


def distributions(
    session: Session, since: float, guild_id: str | None = None
) -> dict[str, list[Distribution]]:
    """Likeness per server and per model since ``since`` (one server's only, when ``guild_id`` is given)."""
    query = (
        select(
            Order.guild_id, Order.model_id, TrainedModel.name, Image.likeness_verdict, Image.likeness_score
        )
        .join(Order, col(Order.id) == col(Image.order_id))
        .join(TrainedModel, col(TrainedModel.id) == col(Order.model_id), isouter=True)
        .where(col(Image.likeness_verdict).is_not(None), Image.created_at >= since)
    )
    if guild_id is not None:
        query = query.where(Order.guild_id == guild_id)
    rows = list(session.exec(query))
    by_guild: dict[str, list[tuple[str, float | None]]] = {}
    by_model: dict[str, list[tuple[str, float | None]]] = {}
    names: dict[str, str] = {}
    for guild, model, name, verdict, score in rows:
        by_guild.setdefault(guild or "direct messages", []).append((verdict, score))
        by_model.setdefault(model or "?", []).append((verdict, score))
        names[model or "?"] = name or model or "?"
    return {
        "servers": [_summary(k, k, v) for k, v in sorted(by_guild.items())],
        "models": [_summary(k, names[k], v) for k, v in sorted(by_model.items())],
    }


def _summary(key: str, label: str, rows: list[tuple[str, float | None]]) -> Distribution:
    scores = sorted(s for _, s in rows if s is not None)
    quartiles = None
    if scores:

        def at(q: float) -> float:
            return round(scores[min(len(scores) - 1, int(q * len(scores)))], 2)

        quartiles = (at(0.25), at(0.5), at(0.75))
    return Distribution(key, label, dict(Counter(v for v, _ in rows)), quartiles)
