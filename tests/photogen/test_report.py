"""The demo report reads as the product: the scenario in a few lines, results titled with the member's words
at a visible size, training progress to the end."""

from __future__ import annotations

import re
from pathlib import Path

from photogen.report import PostedMessage, Report, render_html, write_report


def _report() -> Report:
    msgs = [
        PostedMessage(1, "t1", "", [{"title": "Training order accepted"}], ["Cancel"], [], 3, False),
        PostedMessage(
            2,
            "t2",
            "",
            [{"title": "Your pictures"}],
            ["U1", "V1"],
            ["outputs/2-grid.jpg", "outputs/2-a.png"],
            0,
            False,
        ),
        PostedMessage(3, "t3", "Here is a preview", [], [], ["outputs/3-preview.png"], 0, False),
    ]
    return Report(
        "tiny-sd",
        True,
        ["inputs/a.jpg"],
        ["outputs/2-grid.jpg", "outputs/2-a.png", "outputs/3-preview.png"],
        [(0.0, "start")],
        [
            {
                "id": "o1",
                "kind": "train",
                "status": "delivered",
                "created": 0.0,
                "updated": 5.0,
                "error": "",
                "step": 40,
                "total": 40,
            }
        ],
        msgs,
        {"outputs/2-grid.jpg": b"x"},
        scenario=["eileen runs /train", "eileen runs /imagine"],
        captions={2: "/imagine “a photo of {subject}” · style headshot"},
        progress=[(0, 40), (10, 40), (10, 40), (40, 40)],
    )


def test_results_carry_the_members_words_and_show_at_a_visible_size() -> None:
    page = render_html(_report())
    titles = re.findall(r"<div class='result'><h3>(.*?)</h3>", page)
    # the member's words where the scenario knows them; else what the bot titled the message
    assert titles == ["/imagine “a photo of {subject}” · style headshot", "Here is a preview"]
    css = re.search(r"\.grid img\{([^}]*)\}", page)
    assert css is not None and "width:256px" in css.group(1) and "pixelated" in css.group(1)
    assert "object-fit:cover" not in css.group(1)  # a grid is shown whole, not cropped into a thumbnail


def test_the_scenario_and_progress_to_100_percent_are_shown() -> None:
    page = render_html(_report())
    assert re.findall(r"<li>(.*?)</li>", page) == ["eileen runs /train", "eileen runs /imagine"]
    progress = page.split("<h2>Training progress</h2>", 1)[1].split("</p>", 1)[0]
    assert "width:100%" in progress and "40/40 steps" in progress and "0 % → 25 % → 100 %" in progress
    orders = page.split("<h2>Orders</h2>", 1)[1]
    assert "width:100%" in orders.split("</tr>", 2)[1]


def test_write_report_keeps_the_scenario_in_the_json(tmp_path: Path) -> None:
    path = write_report(_report(), tmp_path)
    assert path.read_text().count("<li>") == 2
    assert '"progress"' in (tmp_path / "report.json").read_text()


def test_member_words_are_text_in_the_report_never_markup() -> None:
    """The report's template is autoescaped: a caption, a message, an embed, a button, a scenario line or an
    order error holding markup shows as text; only the template's own tags (line breaks included) are tags."""
    hostile = "<script>alert(1)</script>"
    r = _report()
    r.captions[2] = f"{hostile} title"
    r.scenario.append(hostile)
    r.timeline.append((1.0, hostile))
    r.orders[0]["error"] = hostile
    r.messages.append(
        PostedMessage(
            4,
            "t4",
            f"{hostile}\nmore",
            [
                {
                    "title": hostile,
                    "description": "line one\n<b>line two</b>",
                    "fields": [{"name": "n<i>", "value": "v\n" + hostile}],
                }
            ],
            [hostile],
            ["outputs/4-a.png' onerror='alert(1)"],
            0,
            False,
        )
    )
    page = render_html(r)
    assert "<script" not in page and "<b>line two" not in page and "<i>n<i>" not in page
    assert "onerror='alert" not in page  # a file name cannot close the quoted src attribute
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    titles = re.findall(r"<div class='result'><h3>(.*?)</h3>", page)
    assert titles[0] == f"{escaped} title"
    assert f"<li>{escaped}</li>" in page and f"<td>{escaped}</td>" in page  # scenario / timeline and order
    assert f"<span class='btn'>{escaped}</span>" in page
    # embed lines still break where the text did; the text between the breaks stays escaped
    assert "line one<br>&lt;b&gt;line two&lt;/b&gt;" in page
    assert f"<i>n&lt;i&gt;</i>: v<br>{escaped}" in page
