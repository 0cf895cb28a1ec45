"""Real faces where a real model would draw them, for the tiny test models (which draw noise, where no face
is found): a GroupComposer ``people`` hook that pastes face photos at the layout's head centres, so that the
group face pass really detects and redraws a face per member in benchmarks and tests. A stand-in for what
cannot exist offline (a real model's weights); never used in production. Torch-free.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gpu_agent.engine.group.compose import PeopleHook
from gpu_agent.photos.faces import detect_faces


def face_crops(photos: list[Image.Image], margin: float = 1.6) -> list[Image.Image]:
    """Each photo's largest face, cropped square with ``margin`` × its size around it."""
    crops = []
    for photo in photos:
        rgb = photo.convert("RGB")
        faces, _ = detect_faces(np.asarray(rgb), 1.0, 1)
        if not faces:
            raise ValueError("a stand-in face photo has no face in it")
        face = faces[0]
        cx, cy, half = face.left + face.width / 2, face.top + face.height / 2, face.width * margin / 2
        crops.append(rgb.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half))))
    return crops


def paste_faces(crops: list[Image.Image], side: int) -> PeopleHook:
    """A hook pasting ``crops`` (person k gets crop k modulo their number) ``side`` pixels square, centred on
    each head and moved inside the picture."""

    def paint(image: Image.Image, heads: list[tuple[int, int]]) -> Image.Image:
        out = image.convert("RGB")
        for k, (x, y) in enumerate(heads):
            left = min(max(0, x - side // 2), out.width - side)
            top = min(max(0, y - side // 2), out.height - side)
            out.paste(crops[k % len(crops)].resize((side, side), Image.Resampling.LANCZOS), (left, top))
        return out

    return paint
