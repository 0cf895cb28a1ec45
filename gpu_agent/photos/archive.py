"""A safe reader for .zip uploads to /train.

Entry names are only labels: nothing is ever written to disk under them, so ``../`` and absolute paths cannot
matter. Sizes are enforced on the bytes actually inflated, not on what the headers claim (zip bombs lie).
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
import zlib
from pathlib import PurePosixPath

from gpu_agent.photos.errors import ZipRefused, size_words

_JUNK_NAMES = {"thumbs.db", "desktop.ini", "__macosx"}
_MAX_TOTAL_CAP = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


def _skipped(info: zipfile.ZipInfo) -> bool:
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if info.is_dir() or not parts:
        return True
    # ".." is a path trick, not a hidden file: the name is only a label, so it does not matter.
    return any(p.lower() in _JUNK_NAMES or (p.startswith(".") and p not in (".", "..")) for p in parts)


class ByteBudget:
    """A running allowance of bytes shared by every file of one upload, charged as bytes actually come out."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    @property
    def left(self) -> int:
        return self.max_bytes - self.used

    def charge(self, n: int) -> bool:
        """Take ``n`` bytes; False (and nothing taken) when that would pass the budget."""
        if n > self.left:
            return False
        self.used += n
        return True


def count_entries(data: bytes, *, label: str = "the .zip file") -> int:
    """How many files ``read_zip`` would return, from the archive's directory alone: nothing is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(1 for i in archive.infolist() if not _skipped(i))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ZipRefused(label, "it is damaged or not a .zip archive") from None


def entry_label(filename: str) -> str:
    """The last part of an entry's name, printable and short, for reports."""
    base = filename.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    shown = "".join(c for c in base if unicodedata.category(c)[0] not in ("C", "Z") or c == " ").strip()
    return (shown or "unnamed")[:80]


def read_zip(
    data: bytes,
    *,
    max_entries: int,
    max_entry_bytes: int,
    max_total_bytes: int | None = None,
    label: str = "the .zip file",
    budget: ByteBudget | None = None,
) -> list[tuple[str, bytes]]:
    """The files in a .zip as (label, bytes), in archive order; folders, ``__MACOSX`` and dotfiles skipped.

    Raises ZipRefused for a damaged or encrypted archive, more than ``max_entries`` files, one file inflating past
    ``max_entry_bytes`` or all of them past ``max_total_bytes`` (default: entries × entry cap, at most 256 MB).
    With ``budget`` (one upload's allowance across all its files), the inflated bytes are charged to it too and
    reading stops the moment it is spent, whatever the headers declared.
    """
    total_cap = (
        max_total_bytes if max_total_bytes is not None else min(max_entries * max_entry_bytes, _MAX_TOTAL_CAP)
    )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ZipRefused(label, "it is damaged or not a .zip archive") from None
    with archive:
        infos = [i for i in archive.infolist() if not _skipped(i)]
        if len(infos) > max_entries:
            raise ZipRefused(label, f"it holds {len(infos)} files; at most {max_entries} photos per training")
        out: list[tuple[str, bytes]] = []
        total = 0
        for info in infos:
            name = entry_label(info.filename)
            if info.flag_bits & 0x1:
                raise ZipRefused(label, f"{name} is password-protected; send a zip without a password")
            if info.file_size > max_entry_bytes:
                raise ZipRefused(
                    label,
                    f"{name} is {info.file_size / 1_048_576:.1f} MB unpacked; the limit is "
                    f"{max_entry_bytes / 1_048_576:.0f} MB a photo",
                )
            room = min(
                max_entry_bytes, total_cap - total, budget.left if budget is not None else max_entry_bytes
            )
            body = _inflate(archive, info, name, label, room)
            if body is None and budget is not None and budget.left < min(max_entry_bytes, total_cap - total):
                raise ZipRefused(
                    label,
                    f"your files unpack to more than {size_words(budget.max_bytes)} in all; "
                    "send fewer or smaller photos",
                )
            if body is None and total_cap - total < max_entry_bytes:
                raise ZipRefused(
                    label, f"its files unpack to more than {total_cap / 1_048_576:.0f} MB in all"
                )
            if body is None:
                raise ZipRefused(
                    label,
                    f"{name} unpacks to more than {max_entry_bytes / 1_048_576:.0f} MB; "
                    "that is the limit a photo",
                )
            total += len(body)
            if budget is not None:
                budget.charge(len(body))
            out.append((name, body))
        return out


def _inflate(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, label: str, cap: int
) -> bytes | None:
    """The entry's bytes, or None once more than ``cap`` came out (reading stops there: a bomb never inflates)."""
    buf = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                buf += chunk
                if len(buf) > cap:
                    return None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zipfile.LargeZipFile, zlib.error):
        raise ZipRefused(label, f"{name} is damaged inside the archive") from None
    except (NotImplementedError, RuntimeError):
        raise ZipRefused(label, f"{name} is packed with a method we do not unpack; use a plain zip") from None
    return bytes(buf)
