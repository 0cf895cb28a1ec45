"""Fixtures for the engine tests: a shared on-disk cache of the tiny test models and a small photo set."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test session: tiny models are built once, then loaded from disk."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def face_photos(faces_dir: Path) -> list[Image.Image]:
    """Four small photos of one real person (crops and a mirror of the astronaut portrait)."""
    with Image.open(faces_dir / "astronaut.png") as source:
        portrait = source.convert("RGB")
    crops = [(120, 20, 360, 260), (140, 40, 340, 240), (100, 0, 380, 280)]
    photos = [portrait.crop(box).resize((48, 48), Image.Resampling.LANCZOS) for box in crops]
    photos.append(ImageOps.mirror(photos[0]))
    return photos
