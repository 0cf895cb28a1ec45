"""Why a photo or an upload is refused, in words a Discord member understands.

``str(err)`` is the whole sentence ("photo 3 (IMG_1.jpg) is not a picture we can read: the file is empty");
``err.reason`` is the plain reason alone, for a per-photo report line.
"""

from __future__ import annotations


def size_words(n: int) -> str:
    """A byte count as a member reads it: "160 MB", "200 KB"."""
    return f"{n / 1_048_576:.0f} MB" if n >= 1_048_576 else f"{max(1, round(n / 1024))} KB"


class PhotoError(ValueError):
    """Base of every refusal of a photo or an upload."""

    lead = "cannot be used"

    def __init__(self, label: str, reason: str) -> None:
        self.label = label
        self.reason = reason
        super().__init__(f"{label} {self.lead}: {reason}")


class UnreadablePhoto(PhotoError):
    """Not a picture we can read: the content is not JPEG/PNG/WebP/HEIC, or it is damaged."""

    lead = "is not a picture we can read"


class EmptyPhoto(UnreadablePhoto):
    """The file has no bytes at all."""


class UnsupportedFormat(UnreadablePhoto):
    """The content (sniffed, never the file name) is not one of the formats we accept."""


class AnimatedPhoto(UnreadablePhoto):
    """An animated GIF/PNG/WebP: which frame would be the member?"""


class TruncatedPhoto(UnreadablePhoto):
    """The file ends before the picture does (an interrupted upload or copy)."""


class PhotoTooLarge(PhotoError):
    """Too many bytes, or a header that claims more pixels than we decode (a decompression bomb)."""

    lead = "is too large"


class FileTooLarge(PhotoTooLarge):
    """More bytes than settings.max_photo_bytes."""


class TooManyPixels(PhotoTooLarge):
    """width × height in the header is over settings.max_photo_pixels; refused before any pixel is decoded."""


class ZipRefused(PhotoError):
    """A .zip upload we will not unpack (damaged, encrypted, too many files, too large once unpacked)."""

    lead = "cannot be unpacked"
