"""The demo photos that ship with Photogen are one good training set."""

from __future__ import annotations

from gpu_agent.photos import PhotoCheckConfig, check_photos
from photogen.assets import DEMO_PHOTOS_DIR, demo_photos


def test_the_shipped_demo_set_passes_the_photo_checks() -> None:
    photos = demo_photos()
    assert 6 <= len(photos) <= 8
    assert all(name.endswith(".jpg") and len(data) < 150 * 1024 for name, data in photos)
    report = check_photos(photos, PhotoCheckConfig(crop_size=256))
    assert [p.reason for p in report.rejected] == []
    assert report.accepted


def test_every_demo_photo_has_its_derivation_written_down() -> None:
    sources = (DEMO_PHOTOS_DIR / "SOURCES.md").read_text(encoding="utf-8")
    assert "public domain" in sources
    assert all(f"| {name} |" in sources for name, _ in demo_photos())
