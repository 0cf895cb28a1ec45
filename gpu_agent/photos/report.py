"""What check_photos says about each photo and about the set, in words for a Discord member."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from PIL import Image


class Verdict(StrEnum):
    OK = "ok"
    UNREADABLE = "unreadable"
    TOO_LARGE = "too_large"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    FACE_TOO_SMALL = "face_too_small"
    BLURRY = "blurry"
    DUPLICATE = "duplicate"
    OTHER_PERSON = "other_person"


@dataclass
class PhotoResult:
    """One photo's outcome. A good photo carries its face-centred crop (RGB, and JPEG bytes without metadata)."""

    index: int  # 1-based, upload order
    name: str  # the label the member sees, e.g. "photo 3 (IMG_1.jpg)"
    verdict: Verdict
    reason: str = ""  # plain words; empty when ok
    sha256: str = ""  # of the uploaded bytes
    face_box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in the decoded upright photo
    sharpness: float | None = None
    crop: Image.Image | None = field(default=None, repr=False)
    crop_jpeg: bytes = field(default=b"", repr=False)
    crop_sha256: str = ""  # of crop_jpeg: what is stored and trained on
    identity_distance: float | None = None  # to the set's medoid face

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def line(self) -> str:
        """One Discord line: ✅/❌, the name, and why."""
        return f"✅ {self.name}" if self.ok else f"❌ {self.name}: {self.reason}"


@dataclass
class PhotoSetReport:
    photos: list[PhotoResult]
    min_good_photos: int
    augment_below: int = 0  # a set with fewer good photos is augmented before training (0: never)

    @property
    def good(self) -> list[PhotoResult]:
        return [p for p in self.photos if p.ok]

    @property
    def rejected(self) -> list[PhotoResult]:
        return [p for p in self.photos if not p.ok]

    @property
    def accepted(self) -> bool:
        return len(self.good) >= self.min_good_photos

    @property
    def summary(self) -> str:
        good, total, need = len(self.good), len(self.photos), self.min_good_photos
        if self.accepted:
            dropped = f" {total - good} will be left out (see below)." if good < total else ""
            advice = few_photos_advice(good, self.augment_below)
            return f"{good} of {total} photos are good — enough to train.{dropped}" + (
                f"\n{advice}" if advice else ""
            )
        more = need - good
        return (
            f"Only {good} of {total} photos can be used; training needs at least {need} good photos of you. "
            f"Replace the ones below or add {more} more."
        )

    def text(self, max_chars: int = 1900) -> str:
        """The summary and one line per rejected photo, cut to fit a Discord message (2,000 characters)."""
        lines = [self.summary, *(p.line() for p in self.rejected)]
        out: list[str] = []
        used = 0
        for n, line in enumerate(lines):
            if used + len(line) + 1 > max_chars - 40:
                out.append(f"… and {len(lines) - n} more.")
                break
            out.append(line)
            used += len(line) + 1
        return "\n".join(out)


def few_photos_advice(good: int, augment_below: int) -> str | None:
    """What a member with few good photos gets, and how to do better (None for a set large enough)."""
    if good >= augment_below:
        return None
    return (
        f"With {good} photos you get a usable model: before training we make extra pictures from them (closer "
        "crops, mirror images, other light and new backgrounds), so it learns your face and not the room. "
        "Expect it to look most like you in poses and light close to your photos. "
        f"For a closer likeness, add {augment_below - good} or more photos from other days, in other light, "
        "from other angles and with other expressions."
    )
