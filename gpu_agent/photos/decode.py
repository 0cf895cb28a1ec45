"""Safe decoding of one uploaded photo into a metadata-free RGB image.

Order matters: size of the file, then its type sniffed from the content (the name is never trusted), then the
header's width×height (decompression bombs), and only then the pixels.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps

from gpu_agent.photos.errors import (
    AnimatedPhoto,
    EmptyPhoto,
    FileTooLarge,
    TooManyPixels,
    TruncatedPhoto,
    UnreadablePhoto,
    UnsupportedFormat,
)

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class DecodedPhoto:
    """An upright RGB image with no metadata, and what it was."""

    image: Image.Image
    format: str  # JPEG, PNG, WEBP, HEIF
    scale: float = (
        1.0  # pixels of the file per pixel of ``image`` (> 1 when a large JPEG was decoded reduced)
    )


def sniff_format(data: bytes) -> str | None:
    """The image format by magic bytes: JPEG, PNG, WEBP, HEIF, or None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF"
    return None


def _what_it_is(data: bytes) -> str:
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "it is a GIF; send a JPEG, PNG, WebP or HEIC photo"
    if data[:4] == b"PK\x03\x04":
        return "it is a .zip archive, not a photo"
    if data[:4] == b"%PDF":
        return "it is a PDF document; send the photo itself"
    if data[4:8] == b"ftyp":
        return "it is a video or an image type we do not take; send a JPEG, PNG, WebP or HEIC photo"
    return "the file is not a JPEG, PNG, WebP or HEIC image"


_heif_lock = threading.Lock()
_heif_ready = False


def _register_heif() -> None:
    global _heif_ready  # registering Pillow's HEIF opener is process-wide and needed once
    with _heif_lock:
        if not _heif_ready:
            import pillow_heif  # only when a HEIC arrives

            pillow_heif.register_heif_opener()
            _heif_ready = True


def decode_photo(
    data: bytes, label: str, *, max_bytes: int, max_pixels: int, min_side: int | None = None
) -> DecodedPhoto:
    """Decode ``data`` into an upright, metadata-free RGB image, or raise a PhotoError subclass naming ``label``.

    With ``min_side``, a large JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling: several times
    faster, a fraction of the memory) as long as both sides stay at least ``min_side``.
    """
    if not data:
        raise EmptyPhoto(label, "the file is empty")
    if len(data) > max_bytes:
        raise FileTooLarge(
            label, f"the file is {len(data) / 1_048_576:.1f} MB; the limit is {max_bytes / 1_048_576:.0f} MB"
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormat(label, _what_it_is(data))
    if fmt == "HEIF":
        _register_heif()
    try:
        # Image.open reads the header only. Pillow's own bomb guard may fire here already (over 2× its
        # MAX_IMAGE_PIXELS); our lower limit is checked right below, still before any pixel is decoded.
        img = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        raise TooManyPixels(label, "the picture claims more pixels than we accept") from None
    except Exception:
        raise UnreadablePhoto(label, f"the {fmt} data is damaged") from None
    with img:
        width, height = img.size
        if width * height > max_pixels or width <= 0 or height <= 0:
            raise TooManyPixels(
                label, f"{width}×{height} pixels is over the limit of {max_pixels / 1e6:.0f} megapixels"
            )
        if fmt != "HEIF" and getattr(img, "is_animated", False):
            raise AnimatedPhoto(label, "it is animated; send a still photo")
        if fmt == "JPEG" and min_side:
            img.draft(img.mode, (min_side, min_side))
        try:
            img.load()
        except OSError as err:
            if "truncated" in str(err) or "broken data stream" in str(err):
                raise TruncatedPhoto(label, "the file is cut short (was the upload interrupted?)") from None
            raise UnreadablePhoto(label, f"the {fmt} data is damaged") from None
        except Exception:
            raise UnreadablePhoto(label, f"the {fmt} data is damaged") from None
        try:
            upright = ImageOps.exif_transpose(img)
        except Exception:
            upright = img.copy()
        rgb = to_rgb(upright)
    return DecodedPhoto(_without_metadata(rgb), fmt, max(width, height) / max(img.size))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit sRGB: alpha composited on white, 16-bit scaled (not clipped), ICC honoured."""
    icc = img.info.get("icc_profile")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's own I;16 → L conversion clips at 255 (a white picture); scale the real range instead.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    if icc and img.mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
            if converted is not None:  # None only for inPlace=True
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a broken or exotic profile: the plain conversion below is close enough to train on
    return img.convert("RGB")


def _without_metadata(img: Image.Image) -> Image.Image:
    # A fresh image carries no EXIF (GPS!), XMP, ICC or comments: Pillow's encoders fall back to .info for some.
    clean = Image.new("RGB", img.size)
    clean.paste(img)
    return clean
