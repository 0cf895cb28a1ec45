"""The demo's HTML report: a contact sheet of inputs and outputs, the order timeline, every message the bot posted."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} .warn{background:#fff3cd;border:1px solid #e0c060;padding:.8rem;border-radius:6px}
.scenario{background:#eef3ff;border-radius:6px;padding:.6rem 1rem} .scenario li{margin:.2rem 0}
.sheet{display:flex;flex-wrap:wrap;gap:8px} .sheet img{width:128px;height:128px;object-fit:cover;border-radius:4px;
border:1px solid #ccc}
.result{margin:1rem 0} .result h3{margin:.2rem 0 .4rem;font-size:1.05rem}
.grid img{width:256px;height:auto;image-rendering:pixelated;border-radius:4px;border:1px solid #ccc;
margin:0 8px 8px 0;vertical-align:top}
.grid img.sheet-img{width:512px}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:.9rem}
.bar{background:#e5e5ef;border-radius:4px;width:160px;height:10px;display:inline-block;vertical-align:middle}
.bar span{display:block;height:10px;border-radius:4px;background:#5865f2}
.msg{border-left:4px solid #5865f2;padding:.4rem .8rem;margin:.6rem 0;background:#f6f6fb}
.msg img{width:256px;height:auto;image-rendering:pixelated;margin:4px 4px 0 0;border-radius:4px}
.btn{display:inline-block;border:1px solid #999;border-radius:4px;padding:0 6px;margin-right:4px;font-size:.8rem}
"""


def _embed_html(e: dict[str, Any]) -> str:
    parts = []
    if e.get("title"):
        parts.append(f"<b>{html.escape(e['title'])}</b>")
    if e.get("description"):
        parts.append(html.escape(e["description"]).replace("\n", "<br>"))
    for f in e.get("fields", []):
        parts.append(
            f"<i>{html.escape(f.get('name', ''))}</i>: {html.escape(f.get('value', ''))}".replace(
                "\n", "<br>"
            )
        )
    return "<br>".join(parts)


def _percent(step: int | None, total: int | None) -> int | None:
    return None if not total or step is None else round(100 * step / total)


def _bar(pct: int) -> str:
    return f"<span class='bar'><span style='width:{pct}%'></span></span> {pct} %"


def _title(r: Report, m: PostedMessage) -> str:
    """The member's words that asked for this message; else what the bot titled it."""
    if m.id in r.captions:
        return r.captions[m.id]
    for e in m.embeds:
        if e.get("title"):
            return str(e["title"])
    return m.content.splitlines()[0] if m.content else f"message {m.id}"


def _results_html(r: Report) -> list[str]:
    esc = html.escape
    out = []
    for m in r.messages:
        images = [f for f in m.files if f.lower().endswith(_IMAGE_SUFFIXES)]
        if not images:
            continue
        out.append(f"<div class='result'><h3>{esc(_title(r, m))}</h3><div class='grid'>")
        out += [
            f"<a href='{esc(f)}'><img src='{esc(f)}' alt='{esc(_title(r, m))}'"
            f"{' class=sheet-img' if len(images) == 1 or 'grid' in f.lower() else ''}></a>"
            for f in images
        ]
        out.append("</div></div>")
    return out


def render_html(r: Report) -> str:
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Photogen demo report</title>",
        f"<style>{_CSS}</style></head><body><h1>Photogen demo report</h1>",
        f"<p>Base model: <code>{esc(r.base_model)}</code></p>",
    ]
    if r.test_model:
        out.append(
            "<p class='warn'><b>Test model.</b> This run used Photogen's built-in tiny randomly initialised "
            "model: the pipeline, training and delivery are real, but the model draws noise, not people. "
            "Run <code>photogen demo --base-model &lt;hub id or path&gt;</code> on a GPU for real pictures.</p>"
        )
    if r.scenario:
        out.append("<h2>What happened</h2><ol class='scenario'>")
        out += [f"<li>{esc(line)}</li>" for line in r.scenario]
        out.append("</ol>")
    if r.progress:
        last_step, last_total = r.progress[-1]
        trained_pct = _percent(last_step, last_total) or 0
        seen = " → ".join(f"{_percent(s_, t)} %" for s_, t in _thinned(r.progress))
        out.append(
            f"<h2>Training progress</h2><p>{_bar(trained_pct)} ({last_step}/{last_total} steps; seen: {esc(seen)})</p>"
        )
    out.append(f"<h2>Inputs ({len(r.inputs)} photos)</h2><div class='sheet'>")
    out += [f"<img src='{esc(p)}' alt='input'>" for p in r.inputs]
    out.append(f"</div><h2>Results ({len(r.outputs)} images)</h2>")
    out += _results_html(r)
    out.append("<h2>Timeline</h2><table><tr><th>t</th><th>step</th></tr>")
    out += [f"<tr><td>{at:.1f}s</td><td>{esc(what)}</td></tr>" for at, what in r.timeline]
    out.append(
        "</table><h2>Orders</h2><table><tr><th>order</th><th>kind</th><th>status</th><th>progress</th>"
        "<th>took</th><th>error</th></tr>"
    )
    for o in r.orders:
        pct = _percent(o.get("step"), o.get("total"))
        out.append(
            f"<tr><td><code>{esc(o['id'])}</code></td><td>{esc(o['kind'])}</td><td>{esc(o['status'])}</td>"
            f"<td>{_bar(pct) if pct is not None else '–'}</td>"
            f"<td>{o['updated'] - o['created']:.1f}s</td><td>{esc(o['error'])}</td></tr>"
        )
    out.append(f"</table><h2>Every message the bot posted ({len(r.messages)}), as it reads at the end</h2>")
    for m in r.messages:
        out.append(
            f"<div class='msg'><small>{esc(m.at)} · id {m.id} · edits {m.edits}"
            f"{' · ephemeral' if m.ephemeral else ''}</small><br>{esc(m.content)}"
        )
        out += [f"<div>{_embed_html(e)}</div>" for e in m.embeds]
        out += [
            f"<img src='{esc(f)}' alt='attachment'>" for f in m.files if f.lower().endswith(_IMAGE_SUFFIXES)
        ]
        if m.buttons:
            out.append("<div>" + "".join(f"<span class='btn'>{esc(b)}</span>" for b in m.buttons) + "</div>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)


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
