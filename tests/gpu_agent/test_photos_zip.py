"""The /train .zip reader: names are labels only, junk is skipped, bombs and lies are stopped early."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from gpu_agent.photos import ZipRefused, read_zip

MB = 1024 * 1024


def make_zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, body in entries.items():
            if name.endswith("/"):
                zf.mkdir(name.rstrip("/"))
            else:
                zf.writestr(name, body)
    return buf.getvalue()


def test_reads_photos_skipping_folders_macos_junk_and_dotfiles() -> None:
    data = make_zip(
        {
            "holiday/": b"",
            "holiday/IMG_1.jpg": b"one",
            "__MACOSX/holiday/._IMG_1.jpg": b"apple double",
            "holiday/.DS_Store": b"finder",
            ".hidden/IMG_9.jpg": b"hidden",
            "Thumbs.db": b"windows",
            "IMG_2.heic": b"two",
        }
    )
    assert read_zip(data, max_entries=5, max_entry_bytes=MB) == [
        ("IMG_1.jpg", b"one"),
        ("IMG_2.heic", b"two"),
    ]


def test_path_tricks_are_only_labels() -> None:
    data = make_zip(
        {
            "../../etc/passwd.jpg": b"a",
            "/abs/root.png": b"b",
            "C:\\win\\evil.jpg": b"c",
            "bell\x07\u202etxt.jpg": b"d",
        }
    )
    names = [name for name, _ in read_zip(data, max_entries=5, max_entry_bytes=MB)]
    assert names == ["passwd.jpg", "root.png", "evil.jpg", "belltxt.jpg"]


def test_too_many_photos() -> None:
    data = make_zip({f"{i}.jpg": b"x" for i in range(21)})
    with pytest.raises(ZipRefused, match="holds 21 files; at most 20"):
        read_zip(data, max_entries=20, max_entry_bytes=MB)


def test_zip_bomb_entry_stops_at_the_cap() -> None:
    data = make_zip({"bomb.jpg": bytes(40 * MB)})
    assert len(data) < 100_000
    start = time.perf_counter()
    with pytest.raises(ZipRefused, match=r"bomb\.jpg is 40\.0 MB unpacked; the limit is 20 MB"):
        read_zip(data, max_entries=5, max_entry_bytes=20 * MB)
    assert time.perf_counter() - start < 0.5


def _lie_about_size(data: bytes, claimed: int) -> bytes:
    """Patch the local and central headers to claim ``claimed`` uncompressed bytes (a lying zip bomb)."""
    raw = bytearray(data)
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, claimed)
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, claimed)
    return bytes(raw)


def test_a_header_that_lies_about_the_size_never_inflates_past_it() -> None:
    data = _lie_about_size(make_zip({"liar.jpg": bytes(30 * MB)}), 1000)
    with pytest.raises(ZipRefused, match=r"liar\.jpg is damaged"):
        read_zip(data, max_entries=5, max_entry_bytes=MB)


def test_total_unpacked_size_is_capped() -> None:
    data = make_zip({f"{i}.jpg": bytes(3 * MB) for i in range(4)})
    with pytest.raises(ZipRefused, match="more than 10 MB in all"):
        read_zip(data, max_entries=5, max_entry_bytes=4 * MB, max_total_bytes=10 * MB)


def test_encrypted_entries_are_refused() -> None:
    raw = bytearray(make_zip({"secret.jpg": b"hidden"}))
    struct.pack_into("<H", raw, raw.find(b"PK\x01\x02") + 8, 0x1)
    with pytest.raises(ZipRefused, match="password-protected"):
        read_zip(bytes(raw), max_entries=5, max_entry_bytes=MB)


def test_damaged_or_not_a_zip() -> None:
    with pytest.raises(ZipRefused, match=r"damaged or not a \.zip"):
        read_zip(b"PK\x03\x04 not really", max_entries=5, max_entry_bytes=MB)
    good = make_zip({"a.jpg": b"x" * 5000})
    with pytest.raises(ZipRefused) as err:
        read_zip(good[:-30], max_entries=5, max_entry_bytes=MB, label="photo 1 (pics.zip)")
    assert str(err.value).startswith("photo 1 (pics.zip) cannot be unpacked: ")
