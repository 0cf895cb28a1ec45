"""The recipe table of docs/TRAINING.md, read as the tests compare it with what a trainer runs (tests/bot's recipe
test and the end-to-end scenario)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "TRAINING.md"
FAMILY_COLUMN = {"tiny-sd": 1, "tiny-sdxl": 2}  # the table's SD 1.x and SDXL columns
PER_ORDER = {"base_model", "token", "class_word"}  # named by the order, not the recipe


def documented_recipe(column: int) -> dict[str, str]:
    """{field: value cell} of the recipe table in docs/TRAINING.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) == 4 else None
        if name:
            rows[name[1]] = cells[column]
    return rows


def cell_value(cell: str, like: object) -> object:
    if isinstance(like, tuple):
        return tuple(part.strip() for part in cell.split(","))
    if isinstance(like, str):
        return cell
    return (
        {"True": True, "False": False, "None": None}.get(cell)
        if cell in ("True", "False", "None")
        else (float(cell) if isinstance(like, float) else int(cell))
    )
