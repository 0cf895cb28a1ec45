"""Files that ship with Photogen: the demo training photos (see demo_photos/SOURCES.md) and a second person's
face for the likeness checks (other_faces/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

DEMO_PHOTOS_DIR = Path(__file__).resolve().parent / "demo_photos"
OTHER_PERSON_PHOTO = Path(__file__).resolve().parent / "other_faces" / "grace-hopper.jpg"


def demo_photos() -> list[tuple[str, bytes]]:
    """The shipped demo set as (file name, JPEG bytes), in name order: one person, accepted by check_photos."""
    return [(p.name, p.read_bytes()) for p in sorted(DEMO_PHOTOS_DIR.glob("*.jpg"))]
