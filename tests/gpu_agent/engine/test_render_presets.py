"""Style presets: shipped as data, validated on load, looked up by id."""

from __future__ import annotations

import json

import pytest

from gpu_agent.engine.presets import LAUNCH_PRESET_IDS, PresetError, get_preset, load_presets, parse_presets
from gpu_agent.engine.render_types import RenderRequest


def test_the_four_launch_presets_are_shipped() -> None:
    presets = load_presets()
    for preset_id in LAUNCH_PRESET_IDS:
        assert presets[preset_id].launch, preset_id
    assert {p.id for p in presets.values() if p.launch} == set(LAUNCH_PRESET_IDS)
    assert "Eiffel Tower" in presets["eiffel-tower"].prompt
    assert "Kremlin" in presets["kremlin"].prompt
    assert "Rome" in presets["rome"].prompt
    assert "headshot" in presets["headshot"].prompt
    assert len(presets) >= 6  # the launch four plus more styles


def test_every_preset_is_usable() -> None:
    for preset in load_presets().values():
        prompt = preset.prompt_for("sks man")
        assert "sks man" in prompt and "{subject}" not in prompt
        assert preset.negative_prompt
        w, h = preset.size(512)
        assert max(w, h) == 512 and w % 8 == 0 and h % 8 == 0
        request = RenderRequest.from_preset(preset, "sks man", seed=3, n=2)
        assert (request.width, request.height) == (w, h)
        assert request.steps == preset.steps and request.guidance == preset.guidance


def test_aspect_gives_portrait_sizes() -> None:
    assert get_preset("headshot").size(512) == (408, 512)  # 4:5
    assert get_preset("rome").size(768) == (512, 768)  # 2:3


def test_unknown_preset_is_refused_with_the_known_ids() -> None:
    with pytest.raises(PresetError, match=r"unknown style preset 'mars'.*headshot.*rome"):
        get_preset("mars")


def _book(**changes: object) -> str:
    preset = {
        "id": "x",
        "title": "X",
        "prompt": "photo of {subject}",
        "negative_prompt": "",
        "guidance": 6.0,
        "steps": 30,
        "aspect": "1:1",
    }
    preset.update(changes)
    return json.dumps({"version": 1, "presets": [preset]})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt": "photo of a man"}, "must contain {subject}"),
        ({"aspect": "wide"}, "aspect must look like"),
        ({"steps": 0}, "presets.0.steps"),
        ({"id": "Bad Id"}, "presets.0.id"),
        ({"colour": "red"}, "presets.0.colour"),
    ],
)
def test_a_bad_presets_file_names_the_problem(changes: dict[str, object], message: str) -> None:
    with pytest.raises(PresetError, match=message):
        parse_presets(_book(**changes))


def test_duplicate_ids_and_non_json_are_refused() -> None:
    one = json.loads(_book())["presets"][0]
    with pytest.raises(PresetError, match="appears twice"):
        parse_presets(json.dumps({"version": 1, "presets": [one, one]}))
    with pytest.raises(PresetError, match="not JSON"):
        parse_presets("{nope")


def test_presets_load_from_a_file(tmp_path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(_book(id="mine"))
    assert list(load_presets(path)) == ["mine"]
