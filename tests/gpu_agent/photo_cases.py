"""Photo cases built from the two real test faces: variations of one person, near-duplicates, and bad inputs.

astronaut.png: Eileen Collins, 512×512, face ~91 px at (175, 76). messi5.jpg: Lionel Messi, face ~37 px.
Every builder returns encoded file bytes, as a member would upload them.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

ORIENTATION = 0x0112
GPS_IFD = 0x8825


def load(faces_dir: Path, name: str) -> Image.Image:
    with Image.open(faces_dir / name) as img:
        return img.convert("RGB")


def jpeg(img: Image.Image, quality: int = 92, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, exif=exif if exif is not None else b"")
    return buf.getvalue()


def png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **params)
    return buf.getvalue()


def with_orientation(img: Image.Image, orientation: int) -> bytes:
    """A JPEG whose stored pixels are turned so that EXIF ``orientation`` shows ``img`` upright."""
    stored = {
        3: img.transpose(Image.Transpose.ROTATE_180),
        6: img.transpose(Image.Transpose.ROTATE_90),  # shown after a 90° clockwise turn
        8: img.transpose(Image.Transpose.ROTATE_270),
    }[orientation]
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return jpeg(stored, exif=exif)


def tilted(img: Image.Image, degrees: float, box: tuple[int, int, int, int]) -> Image.Image:
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, center=(220, 120)).crop(box)


def astronaut_set(faces_dir: Path) -> list[tuple[str, bytes]]:
    """Seven genuinely different photos of one person (framing, zoom, mirror, tilt, EXIF turn, colour)."""
    a = load(faces_dir, "astronaut.png")
    return [
        ("full.jpg", jpeg(a)),
        ("mirrored.jpg", jpeg(ImageOps.mirror(a))),
        ("top-crop.jpg", jpeg(a.crop((40, 0, 440, 330)))),
        ("zoom.jpg", jpeg(a.crop((110, 20, 340, 250)).resize((460, 460), Image.Resampling.LANCZOS))),
        ("tilt-left.jpg", jpeg(tilted(a, 9, (60, 10, 420, 420)))),
        ("turned.jpg", with_orientation(ImageOps.mirror(a.crop((0, 40, 400, 512))), 6)),
        ("grey-tilt.png", png(ImageOps.grayscale(tilted(ImageOps.mirror(a), -8, (0, 0, 380, 300))))),
    ]


def astronaut_duplicates(faces_dir: Path) -> list[tuple[str, bytes]]:
    """True near-duplicates of ``full.jpg``: re-encoded, rescaled, recoloured — the same shot each time."""
    a = load(faces_dir, "astronaut.png")
    return [
        ("reencoded.jpg", jpeg(a, quality=55)),
        ("bigger.jpg", jpeg(a.resize((700, 700), Image.Resampling.BICUBIC))),
        ("warmer.jpg", jpeg(ImageEnhance.Color(a).enhance(1.6))),
        ("webp-copy.webp", _webp(a)),
    ]


def messi_portrait(faces_dir: Path) -> bytes:
    """Messi's face cropped and enlarged 3× (to ~110 px) so that it passes the per-photo checks."""
    m = load(faces_dir, "messi5.jpg")
    return jpeg(m.crop((150, 30, 340, 220)).resize((570, 570), Image.Resampling.LANCZOS))


def two_faces(faces_dir: Path) -> bytes:
    """Both people side by side, faces of about the same size."""
    a = load(faces_dir, "astronaut.png").crop((100, 0, 350, 300))
    m = load(faces_dir, "messi5.jpg").crop((170, 40, 320, 220)).resize((375, 450), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (250 + 375, 450), (200, 200, 200))
    canvas.paste(a.resize((250, 300)), (0, 75))
    canvas.paste(m, (250, 0))
    return jpeg(canvas)


def blurry(faces_dir: Path) -> bytes:
    return jpeg(load(faces_dir, "astronaut.png").filter(ImageFilter.GaussianBlur(2)))


def tiny_face(faces_dir: Path) -> bytes:
    """The whole portrait at 60%: the face is ~55 px, found but too small to train on."""
    return jpeg(load(faces_dir, "astronaut.png").resize((307, 307), Image.Resampling.LANCZOS))


def no_face(faces_dir: Path) -> bytes:
    """The right part of the portrait: flag and background, no head."""
    return jpeg(load(faces_dir, "astronaut.png").crop((300, 0, 512, 512)))


def truncated_jpeg(faces_dir: Path) -> bytes:
    data = jpeg(load(faces_dir, "astronaut.png"))
    return data[: len(data) // 2]


def png_bomb_header(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny valid-looking PNG whose header claims width×height pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def with_gps(img: Image.Image) -> bytes:
    """A JPEG carrying GPS coordinates (Paris), a camera model and a comment."""
    exif = Image.Exif()
    exif[0x0110] = "SecretPhone 12"  # Model
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif, comment=b"home address here")
    return buf.getvalue()


def heic(img: Image.Image) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    img.save(buf, "HEIF", quality=90)
    return buf.getvalue()


def _webp(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "WEBP", quality=80)
    return buf.getvalue()
