"""Likeness of delivered pictures, on the bot's side: the scores an agent reports in a render's done event
(stored with each picture by storage.lifecycle, which also queues the advice post after LIKENESS_ADVICE_AFTER
weak pictures of one model) shown in plain words, the advice's wording, and the admin dashboard's summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from storage import metrics
from storage.lifecycle.events import FAILING

__all__ = ["FAILING", "Distribution", "advice_text", "distributions", "words"]
_WORDS = {
    "strong": "strong",
    "fair": "fair",
    "weak": "weak",
    "copy": "too close to one of your photos",
    "no_face": "no face found",
}


def words(scores: list[dict[str, Any]], shown: list[int] | None = None) -> str:
    """'Looks like you: strong (0.71)' for one picture, numbered for several; '' when nothing was scored.
    ``shown``: the indices of the pictures posted (default all); a picture that was not posted gets no words."""
    indices = [i for i in (range(len(scores)) if shown is None else shown) if i < len(scores)]
    if not indices:
        return ""
    parts = []
    for i in indices:
        s = scores[i]
        text = _WORDS.get(s.get("verdict", ""), "unknown")
        if s.get("score") is not None and s.get("verdict") != "no_face":
            text += f" ({s['score']:.2f})"
        parts.append(text if len(scores) == 1 else f"{i + 1}: {text}")
    line = "Looks like you: " + " · ".join(parts)
    rerolled = sum(max(0, int(scores[i].get("tries", 1)) - 1) for i in indices)
    if rerolled:
        line += f" — re-rendered {rerolled}× automatically to get closer, at no charge"
    return line


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
    rows = metrics.likeness_scores(session, since, guild_id)
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
