"""Photo intake for /train: download, unzip, count and size checks, then the engine's photo checks.

Everything here that touches bytes runs in a worker thread (the bot's intake pool, ``bot.run_intake``); only the
downloads are async. One upload has one byte budget (``intake_max_total_bytes``) for what it downloads and for
what its .zip files unpack to, charged as the bytes come; photos are counted from the zip directories before
anything is unpacked; ``MemberIntakes`` lets a member run one intake at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.errors import Refused
from storage.settings import Settings

if TYPE_CHECKING:  # the HTTP API checks photos with this module too, without discord.py
    import discord


@dataclass
class IntakeReport:
    accepted: bool
    summary: str
    lines: list[tuple[str, bool, str]]  # (label, ok, reason) per photo, upload order
    crops: list[bytes] = field(default_factory=list)  # face-centred JPEGs without metadata, to store


@dataclass
class Downloaded:
    label: str  # "photo 3 (IMG_1.jpg)": what the member reads in the report
    filename: str
    data: bytes


class MemberIntakes:
    """The members whose photos are being checked right now (one intake per member at a time)."""

    def __init__(self) -> None:
        self._busy: set[int] = set()

    def claim(self, user_id: int) -> bool:
        """True if the member had no intake running (it is theirs now); False if one still runs."""
        if user_id in self._busy:
            return False
        self._busy.add(user_id)
        return True

    def release(self, user_id: int) -> None:
        self._busy.discard(user_id)


def _over_budget(settings: Settings) -> Refused:
    from gpu_agent.photos import size_words

    cap = size_words(settings.intake_max_total_bytes)
    return Refused(
        f"Your files come to more than {cap} in all (counting what .zip files unpack to); one /train "
        f"takes at most {cap}. Send fewer or smaller photos. Nothing was stored or charged."
    )


def _is_zip(att: discord.Attachment) -> bool:
    return att.filename.lower().endswith(".zip") or (att.content_type or "").endswith("zip")


def _zip_cap(settings: Settings) -> int:
    return min(settings.max_photo_bytes * settings.max_photos, 200 * 1024 * 1024)


def check_declared(settings: Settings, attachments: Sequence[discord.Attachment]) -> None:
    """Refuse on what Discord announces (file count, sizes) before anything is fetched; no I/O, so the command
    can answer with it before deferring (the refusal is then ephemeral)."""
    if len(attachments) > settings.max_photos:
        raise Refused(f"{len(attachments)} files: at most {settings.max_photos} photos per training.")
    wanted = [
        a for a in attachments if a.size <= (_zip_cap(settings) if _is_zip(a) else settings.max_photo_bytes)
    ]
    if sum(a.size for a in wanted) > settings.intake_max_total_bytes:
        raise _over_budget(settings)


async def download(
    settings: Settings, attachments: Sequence[discord.Attachment]
) -> tuple[list[Downloaded], list[tuple[str, str]]]:
    """Fetch the attachments (zips are read later, in a thread). Files over the size limit are never
    downloaded: Discord tells us their size, and they come back as early rejections (label, reason)."""
    check_declared(settings, attachments)
    photos: list[Downloaded] = []
    early: list[tuple[str, str]] = []
    fetched = 0
    for i, att in enumerate(attachments, 1):
        label = f"photo {i} ({att.filename[:60]})"
        cap = _zip_cap(settings) if _is_zip(att) else settings.max_photo_bytes
        if att.size > cap:
            early.append(
                (label, f"the file is {att.size / 1_048_576:.1f} MB; the limit is {cap / 1_048_576:.0f} MB")
            )
            continue
        data = await att.read()
        if len(data) > cap:  # the size Discord announced was wrong: trust the bytes
            early.append((label, f"the file is larger than {cap / 1_048_576:.0f} MB"))
            continue
        fetched += len(data)
        if fetched > settings.intake_max_total_bytes:  # the sizes Discord announced were wrong
            raise _over_budget(settings)
        photos.append(Downloaded(label, att.filename, data))
    return photos, early


def _zipped(d: Downloaded) -> bool:
    return d.data[:4] == b"PK\x03\x04"


def _count_photos(downloaded: list[Downloaded], early: list[tuple[str, str]]) -> int:
    from gpu_agent import photos as engine_photos

    total = len(early)
    for d in downloaded:
        try:
            total += engine_photos.count_entries(d.data, label=d.filename) if _zipped(d) else 1
        except engine_photos.PhotoError as err:
            raise Refused(f"{err}. Nothing was stored or charged.") from None
    return total


def check(settings: Settings, downloaded: list[Downloaded], early: list[tuple[str, str]]) -> IntakeReport:
    """Unzip, enforce the count, run gpu_agent.photos.check_photos. Blocking: call in a thread."""
    from gpu_agent import photos as engine_photos

    total = _count_photos(downloaded, early)  # from the zip directories: nothing is unpacked yet
    if total > settings.max_photos:
        raise Refused(f"{total} photos: at most {settings.max_photos} per training. Pick your best ones.")
    budget = engine_photos.ByteBudget(settings.intake_max_total_bytes)
    items: list[tuple[str, bytes]] = []
    for d in downloaded:
        if _zipped(d):
            try:
                entries = engine_photos.read_zip(
                    d.data,
                    max_entries=settings.max_photos,
                    max_entry_bytes=settings.max_photo_bytes,
                    label=d.filename,
                    budget=budget,
                )
            except engine_photos.PhotoError as err:
                raise Refused(f"{err}. Nothing was stored or charged.") from None
            items.extend((f"{name[:60]} (in {d.filename[:40]})", data) for name, data in entries)
        else:
            if not budget.charge(len(d.data)):
                raise _over_budget(settings)
            items.append((d.label, d.data))
    if not items and early:
        lines = [(label, False, reason) for label, reason in early]
        return IntakeReport(False, "None of the files can be used.", lines)
    config = engine_photos.PhotoCheckConfig.from_settings(settings)
    report = engine_photos.check_photos(items, config)
    lines = [(label, False, reason) for label, reason in early]
    crops: list[bytes] = []
    for photo in report.photos:
        lines.append((photo.name, photo.ok, photo.reason))
        if photo.ok:
            crops.append(photo.crop_jpeg)
    accepted = report.accepted
    if early:
        need = settings.min_good_photos
        summary = f"{len(crops)} of {total} photos are good" + (
            " — enough to train." if accepted else f"; training needs at least {need} good photos of you."
        )
        advice = engine_photos.few_photos_advice(len(crops), settings.fewshot_augment_below)
        if accepted and advice:
            summary += f"\n{advice}"
    else:
        summary = report.summary
    return IntakeReport(accepted, summary, lines, crops if accepted else [])
