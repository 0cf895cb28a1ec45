"""Pictures for Discord: the result grid and keeping files under the attachment size limit."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageOps

#: Discord's default attachment limit (an unboosted server, and an interaction's attachment_size_limit).
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024


def grid(images: Sequence[bytes], *, cell: int = 512) -> bytes:
    """One JPEG with up to four pictures (1×1, 2×1 or 2×2), each scaled to fill a ``cell`` square (small
    pictures, e.g. a tiny test model's 64 px ones, are enlarged rather than left as a dot in a white cell)."""
    opened = [Image.open(io.BytesIO(b)).convert("RGB") for b in images[:4]]
    cols = 1 if len(opened) == 1 else 2
    rows = 1 if len(opened) <= 2 else 2
    sheet = Image.new("RGB", (cols * cell, rows * cell), "white")
    for i, img in enumerate(opened):
        img = ImageOps.contain(img, (cell, cell), Image.Resampling.LANCZOS)
        x = (i % cols) * cell + (cell - img.width) // 2
        y = (i // cols) * cell + (cell - img.height) // 2
        sheet.paste(img, (x, y))
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=90)
    return out.getvalue()


def fit_attachment(
    data: bytes, filename: str, limit: int = DEFAULT_ATTACHMENT_LIMIT
) -> tuple[str, bytes] | None:
    """The file as is if it fits; else re-encoded as JPEG (then downscaled) until it fits; None if it cannot."""
    if len(data) <= limit:
        return filename, data
    img = Image.open(io.BytesIO(data)).convert("RGB")
    stem = filename.rsplit(".", 1)[0]
    for quality, scale in ((92, 1.0), (85, 1.0), (85, 0.7), (80, 0.5), (75, 0.35)):
        candidate = (
            img
            if scale == 1.0
            else img.resize(
                (max(1, int(img.width * scale)), max(1, int(img.height * scale))), Image.Resampling.LANCZOS
            )
        )
        out = io.BytesIO()
        candidate.save(out, "JPEG", quality=quality)
        if out.tell() <= limit:
            return f"{stem}.jpg", out.getvalue()
    return None
