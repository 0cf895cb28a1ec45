"""The door and the agent agree (issue 11, item 7): every set the door accepts passes the agent's re-check of the
stored crops, at every training resolution; what the door refuses, it names."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gpu_agent.photos import PhotoCheckConfig, Verdict, check_crops, check_photos
from photogen.assets import demo_photos
from storage.settings import load_settings

RESOLUTIONS = (512, 768, 1024)


def door_then_agent(photos: list[tuple[str, bytes]], resolution: int) -> tuple[bool, list[str]]:
    """The door's check, then the agent's check of the crops exactly as the bot stores them (its JPEG bytes, in
    the order of the ✅ lines); both build their config from the deployment's Settings the same way."""
    config = PhotoCheckConfig.from_settings(load_settings(train_resolution=resolution))
    door = check_photos(photos, config)
    if not door.accepted:
        return False, []
    stored = [(f"photo {n}", p.crop_jpeg) for n, p in enumerate(door.good, 1)]
    assert all(Image.open(io.BytesIO(data)).size == (resolution, resolution) for _, data in stored)
    agent = check_crops(stored, PhotoCheckConfig.from_settings(load_settings(train_resolution=resolution)))
    return True, [f"{p.name}: {p.reason}" for p in agent.rejected]


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_a_fresh_set_of_five_the_door_accepts_passes_the_agent(resolution: int) -> None:
    # The reported case: five photos of one person, two of them framed from the same portrait (01 and 04), which
    # the agent used to refuse as "(nearly) the same picture as photo 1" after the door had accepted them.
    photos = demo_photos()[:5]
    accepted, agent_refused = door_then_agent(photos, resolution)
    assert accepted
    assert agent_refused == []


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_every_set_the_door_accepts_passes_the_agent(resolution: int) -> None:
    everything = demo_photos()
    for photos in (everything, [everything[0], *everything[3:7]]):
        accepted, agent_refused = door_then_agent(photos, resolution)
        assert accepted, [name for name, _ in photos]
        assert agent_refused == [], [name for name, _ in photos]


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_a_near_duplicate_set_is_refused_at_the_door_naming_the_photo_to_replace(resolution: int) -> None:
    settings = load_settings(train_resolution=resolution)
    photos = demo_photos()[: settings.min_good_photos - 1]  # one short of the minimum without the duplicate
    with Image.open(io.BytesIO(photos[0][1])) as original:
        buf = io.BytesIO()
        original.convert("RGB").save(buf, "JPEG", quality=60)
    photos.append(("again.jpg", buf.getvalue()))
    report = check_photos(photos, PhotoCheckConfig.from_settings(settings))
    assert not report.accepted
    assert [(p.name, p.verdict) for p in report.rejected] == [("again.jpg", Verdict.DUPLICATE)]
    assert "same picture as 01-portrait.jpg" in report.rejected[0].reason
    assert "Replace the ones below" in report.summary


def test_the_agent_still_refuses_what_the_door_would_refuse() -> None:
    # A tampered or mixed-up message: the same stored crop twice, and a crop with no face. The door refuses both
    # (the identical crop as a duplicate, the faceless picture as no face); the agent names the same ones.
    config = PhotoCheckConfig.from_settings(load_settings(train_resolution=512))
    good = [p.crop_jpeg for p in check_photos(demo_photos()[:5], config).good]
    flag = io.BytesIO()
    Image.new("RGB", (512, 512), (40, 90, 160)).save(flag, "JPEG")
    crops = [(f"photo {n}", data) for n, data in enumerate([*good, good[1], flag.getvalue()], 1)]
    report = check_crops(crops, config)
    assert [(p.name, p.verdict) for p in report.rejected] == [
        ("photo 6", Verdict.DUPLICATE),
        ("photo 7", Verdict.NO_FACE),
    ]
    assert "same picture as photo 2" in report.rejected[0].reason
    assert report.accepted and len(report.good) == 5
