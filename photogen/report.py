"""The demo's HTML report: a contact sheet of inputs and outputs, the order timeline, every message the bot posted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from storage.settings import Settings

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class PostedMessage:
    id: int
    at: str
    content: str
    embeds: list[dict[str, Any]]
    buttons: list[str]
    files: list[str]  # paths relative to the report
    edits: int
    ephemeral: bool


@dataclass
class Report:
    base_model: str
    test_model: bool
    inputs: list[str]
    outputs: list[str]
    timeline: list[tuple[float, str]]
    orders: list[dict[str, Any]]
    messages: list[PostedMessage]
    _files: dict[str, bytes]
    scenario: list[str] = field(default_factory=list)  # what the scripted member did, in a few lines
    captions: dict[int, str] = field(
        default_factory=dict
    )  # message id -> the member's words that asked for it
    progress: list[tuple[int, int]] = field(default_factory=list)  # training steps seen (step, total)

    @classmethod
    def collect(
        cls,
        sim: Any,
        channel: Any,
        settings: Settings,
        timeline: list[tuple[float, str]],
        photos: list[Path],
        *,
        scenario: list[str] | None = None,
        captions: dict[int, str] | None = None,
        progress: list[tuple[int, int]] | None = None,
    ) -> Report:
        from sqlmodel import select

        from storage import Order, open_engine, read_session

        files: dict[str, bytes] = {}
        inputs = []
        for p in photos:
            rel = f"inputs/{p.name}"
            files[rel] = p.read_bytes()
            inputs.append(rel)
        outputs, messages = [], []
        for m in sim.messages(channel):
            if not m.author.bot:
                continue
            names = []
            for a in m.attachments:
                rel = f"outputs/{m.id}-{a.filename}"
                files[rel] = a.data
                names.append(rel)
                if (a.content_type or "").startswith("image/") or a.filename.lower().endswith(
                    _IMAGE_SUFFIXES
                ):
                    outputs.append(rel)
            buttons = [
                c.get("label") or c.get("emoji", {}).get("name", "")
                for row in m.components
                for c in row.get("components", [])
            ]
            messages.append(
                PostedMessage(m.id, m.timestamp, m.content, m.embeds, buttons, names, m.edits, m.ephemeral)
            )
        engine = open_engine(settings.database_url)
        with read_session(engine) as s:
            orders = [
                {
                    "id": o.id,
                    "kind": o.kind,
                    "status": o.status,
                    "created": o.created_at,
                    "updated": o.updated_at,
                    "error": o.error_message or "",
                    "step": o.progress_step,
                    "total": o.progress_total,
                }
                for o in s.exec(select(Order).order_by(Order.created_at)).all()
            ]
        engine.dispose()
        test_model = settings.base_model in ("tiny-sd", "tiny-sdxl")
        return cls(
            settings.base_model,
            test_model,
            inputs,
            outputs,
            timeline,
            orders,
            messages,
            files,
            list(scenario or []),
            dict(captions or {}),
            list(progress or []),
        )


# Autoescaped, so a member's words (titles, prompts, captions) can never become markup; undefined names fail.
_TEMPLATES = Environment(
    loader=PackageLoader("photogen", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters["lines"] = lambda text: Markup("<br>").join(str(text).split("\n"))  # escaped, <br> between
_TEMPLATES.globals.update(BR=Markup("<br>"), is_image=lambda name: name.lower().endswith(_IMAGE_SUFFIXES))


def _percent(step: int | None, total: int | None) -> int | None:
    return None if not total or step is None else round(100 * step / total)


def _title(r: Report, m: PostedMessage) -> str:
    """The member's words that asked for this message; else what the bot titled it."""
    if m.id in r.captions:
        return r.captions[m.id]
    for e in m.embeds:
        if e.get("title"):
            return str(e["title"])
    return m.content.splitlines()[0] if m.content else f"message {m.id}"


def render_html(r: Report) -> str:
    progress = None
    if r.progress:
        step, total = r.progress[-1]
        seen = " → ".join(f"{_percent(s_, t)} %" for s_, t in _thinned(r.progress))
        progress = {"pct": _percent(step, total) or 0, "step": step, "total": total, "seen": seen}
    results = []
    for m in r.messages:
        images = [f for f in m.files if f.lower().endswith(_IMAGE_SUFFIXES)]
        if images:
            results.append({"title": _title(r, m), "images": images})
    orders = [
        {**o, "pct": _percent(o.get("step"), o.get("total")), "took": o["updated"] - o["created"]}
        for o in r.orders
    ]
    page = _TEMPLATES.get_template("report.html.j2")
    return page.render(r=r, progress=progress, results=results, orders=orders)


def _thinned(progress: list[tuple[int, int]], most: int = 8) -> list[tuple[int, int]]:
    """Distinct progress samples, at most ``most`` of them, always with the first and the last."""
    distinct = [p for i, p in enumerate(progress) if i == 0 or p != progress[i - 1]]
    if len(distinct) <= most:
        return distinct
    step = (len(distinct) - 1) / (most - 1)
    return [distinct[round(i * step)] for i in range(most)]


def write_report(r: Report, out: Path) -> Path:
    for rel, data in r._files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (out / "report.json").write_text(
        json.dumps(
            {
                "base_model": r.base_model,
                "test_model": r.test_model,
                "inputs": r.inputs,
                "outputs": r.outputs,
                "timeline": r.timeline,
                "orders": r.orders,
                "messages": len(r.messages),
                "scenario": r.scenario,
                "progress": r.progress,
            },
            indent=1,
            default=str,
        )
    )
    path = out / "report.html"
    path.write_text(render_html(r), encoding="utf-8")
    return path
