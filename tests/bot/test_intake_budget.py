"""Intake's memory budget (issue 11, item 5), on real zip archives: one byte allowance for all the files of a
/train, photos counted from the zip directories before anything is unpacked, and sizes trusted only as read."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from bot.errors import Refused
from bot.services import intake
from photogen.assets import demo_photos
from storage.settings import load_settings

MB = 1024 * 1024


def zip_of(files: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return out.getvalue()


def with_lying_sizes(data: bytes, claimed: int) -> bytes:
    """``data`` (a zip) with every entry's declared size, in the local headers and the directory, set to
    ``claimed``: what a zip bomb does to slip past a check of the headers."""
    buf = bytearray(data)
    at = 0
    while (at := buf.find(b"PK\x03\x04", at)) != -1:
        struct.pack_into("<I", buf, at + 22, claimed)
        at += 4
    at = 0
    while (at := buf.find(b"PK\x01\x02", at)) != -1:
        struct.pack_into("<I", buf, at + 24, claimed)
        at += 4
    return bytes(buf)


def downloaded(*files: tuple[str, bytes]) -> list[intake.Downloaded]:
    return [intake.Downloaded(f"photo {n} ({name})", name, data) for n, (name, data) in enumerate(files, 1)]


def test_many_small_zips_share_one_budget() -> None:
    # Ten zips of 1.5 MB of zeros each: every one is tiny and far under the per-zip cap, but together they
    # unpack to 15 MB. Before, all of them were inflated; now the upload is refused once 4 MB came out.
    settings = load_settings(intake_max_total_bytes=4 * MB, max_photos=20)
    zips = [(f"part{n}.zip", zip_of([(f"{n}.jpg", b"\0" * (3 * MB // 2))])) for n in range(10)]
    assert all(len(data) < 20_000 for _, data in zips)
    with pytest.raises(Refused, match=r"more than 4 MB in all"):
        intake.check(settings, downloaded(*zips), [])


def test_plain_photos_and_zips_count_against_the_same_budget() -> None:
    photos = demo_photos()
    settings = load_settings(intake_max_total_bytes=sum(len(d) for _, d in photos[:3]) + 1000)
    with pytest.raises(Refused, match="more than"):
        intake.check(settings, downloaded(*photos[:3], ("rest.zip", zip_of(photos[3:5]))), [])


def test_photos_are_counted_from_the_zip_directories_before_anything_is_unpacked() -> None:
    # Three zips of eight entries: 24 photos, over the limit of 20. The first entry of the first zip is damaged:
    # had anything been unpacked before counting, the answer would be "damaged", not the count.
    settings = load_settings(max_photos=20)
    good = zip_of([(f"{n}.jpg", b"x" * 1000) for n in range(8)])
    damaged = bytearray(good)
    payload = damaged.find(b"PK\x03\x04") + 30 + len("0.jpg")
    damaged[payload : payload + 8] = b"\xff" * 8  # breaks the deflate stream of entry 0
    with pytest.raises(Refused, match="24 photos: at most 20"):
        intake.check(settings, downloaded(("a.zip", bytes(damaged)), ("b.zip", good), ("c.zip", good)), [])


def test_a_zip_whose_sizes_lie_is_still_stopped_while_reading() -> None:
    # Entries declare 1 KB each but inflate to 3 MB: the declared sizes pass every header check, so only the
    # bytes actually read can stop it, and nothing larger than the budget is ever held.
    settings = load_settings(intake_max_total_bytes=4 * MB)
    bomb = with_lying_sizes(zip_of([(f"{n}.jpg", b"\0" * (3 * MB)) for n in range(3)]), 1024)
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:
        assert [i.file_size for i in zf.infolist()] == [1024] * 3
    with pytest.raises(Refused, match="cannot be unpacked"):
        intake.check(settings, downloaded(("bomb.zip", bomb)), [])


def test_an_upload_within_the_budget_is_checked_as_before() -> None:
    photos = demo_photos()
    settings = load_settings(intake_max_total_bytes=sum(len(d) for _, d in photos[:5]) + 1000)
    report = intake.check(settings, downloaded(("set.zip", zip_of(photos[:5]))), [])
    assert report.accepted and len(report.crops) == 5


def test_a_damaged_deflate_stream_is_a_plain_refusal() -> None:
    # It used to escape as zlib.error: an internal error instead of a reason.
    data = bytearray(zip_of([(f"{n}.jpg", b"x" * 1000) for n in range(3)]))
    payload = data.find(b"PK\x03\x04") + 30 + len("0.jpg")
    data[payload : payload + 8] = b"\xff" * 8
    with pytest.raises(Refused, match=r"0\.jpg is damaged inside the archive"):
        intake.check(load_settings(), downloaded(("a.zip", bytes(data))), [])
