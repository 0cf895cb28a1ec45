"""The result grid shows small pictures at a visible size."""

from __future__ import annotations

import io

from PIL import Image

from bot.services.media import grid


def _png(size: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "PNG")
    return out.getvalue()


def test_a_64px_picture_fills_its_cell_instead_of_sitting_in_white() -> None:
    sheet = Image.open(io.BytesIO(grid([_png(64, (200, 0, 0)), _png(64, (0, 0, 200))], cell=512)))
    assert sheet.size == (1024, 512)
    for x, expect in ((40, (200, 0, 0)), (1024 - 40, (0, 0, 200))):  # near the cells' outer edges
        r, g, b = sheet.getpixel((x, 40))
        assert abs(r - expect[0]) < 30 and abs(b - expect[2]) < 30 and g < 30, (x, (r, g, b))


def test_a_wide_picture_keeps_its_shape() -> None:
    out = io.BytesIO()
    Image.new("RGB", (128, 64), (0, 150, 0)).save(out, "PNG")
    sheet = Image.open(io.BytesIO(grid([out.getvalue()], cell=256)))
    assert sheet.getpixel((128, 128))[1] > 120  # the picture, enlarged to 256×128, in the middle
    assert sheet.getpixel((128, 10)) == (255, 255, 255) or min(sheet.getpixel((128, 10))) > 240  # white bands
