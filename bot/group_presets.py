"""The group scenes /group offers: the scene's words and the engine's pose layout it uses (the engine's
layouts: `row`, `table`, `stage`, one pose map per person count 2–4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupPreset:
    id: str
    title: str
    prompt: str  # {n}: how many people
    layout: str  # the engine's pose layout id: row | table | stage
    aspect: str


GROUP_PRESETS: dict[str, GroupPreset] = {
    p.id: p
    for p in (
        GroupPreset(
            "team",
            "Team photo",
            "professional team photo of {n} colleagues standing side by side in a "
            "bright modern office, smiling, photorealistic",
            "row",
            "3:2",
        ),
        GroupPreset(
            "wedding",
            "Wedding table",
            "{n} friends seated together at a wedding reception table, "
            "flowers and candles, warm evening light, photorealistic",
            "table",
            "3:2",
        ),
        GroupPreset(
            "band",
            "Band on stage",
            "a band of {n} musicians performing on stage, concert lights, photorealistic",
            "stage",
            "3:2",
        ),
        GroupPreset(
            "eiffel",
            "Friends at the Eiffel Tower",
            "{n} friends standing together in front of the Eiffel Tower in Paris, sunny day, photorealistic",
            "row",
            "3:2",
        ),
    )
}
DEFAULT_LAYOUT = "row"
