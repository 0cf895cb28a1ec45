"""Write the demo training set: variations of NASA's public-domain portrait of astronaut Eileen Collins.

    python -m photogen.assets.make_demo_photos [--source PATH/astronaut.png] [--out DIR]

The source is scikit-image's ``skimage/data/astronaut.png`` (NASA, public domain; also in the project's
tests/data/faces). Each variation changes framing, zoom, mirroring, tilt or colour enough to be a distinct
photo to the near-duplicate check, and the script refuses to write a set that check_photos would not accept.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from gpu_agent.photos import PhotoCheckConfig, check_photos

OUT_DIR = Path(__file__).resolve().parent / "demo_photos"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "faces" / "astronaut.png"
MAX_BYTES = 150 * 1024


def _tilt(img: Image.Image, degrees: float, box: tuple[int, int, int, int]) -> Image.Image:
    # Turn about the face (near 220, 120) so it stays in frame, then crop away the corners the turn left empty.
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, center=(220, 120)).crop(box)


def _closer(img: Image.Image) -> Image.Image:
    return img.crop((110, 20, 340, 250)).resize((460, 460), Image.Resampling.LANCZOS)


VARIATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "01-portrait.jpg": lambda a: a,
    "02-mirrored.jpg": ImageOps.mirror,
    "03-closer.jpg": _closer,
    "04-off-centre.jpg": lambda a: a.crop((40, 0, 440, 330)),
    "05-tilted.jpg": lambda a: _tilt(a, 9, (60, 10, 420, 420)),
    "06-tilted-other-way.jpg": lambda a: _tilt(ImageOps.mirror(a), -8, (0, 0, 380, 300)),
    "07-black-and-white.jpg": lambda a: ImageOps.grayscale(
        ImageOps.mirror(a.crop((0, 40, 400, 512)))
    ).convert("RGB"),
    "08-warm-closer.jpg": lambda a: ImageEnhance.Color(ImageOps.mirror(_closer(a))).enhance(1.4),
}


def build(source: Path) -> dict[str, bytes]:
    """The demo photos as JPEG bytes (no metadata), by file name."""
    with Image.open(source) as img:
        portrait = img.convert("RGB")
    out: dict[str, bytes] = {}
    for name, make in VARIATIONS.items():
        buf = io.BytesIO()
        make(portrait).save(buf, "JPEG", quality=88, optimize=True)
        out[name] = buf.getvalue()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="astronaut.png (NASA, public domain)"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder to write the JPEGs into")
    args = parser.parse_args(argv)
    photos = build(args.source)
    report = check_photos(list(photos.items()), PhotoCheckConfig())
    too_big = [name for name, data in photos.items() if len(data) > MAX_BYTES]
    if not report.accepted or report.rejected or too_big:
        print(report.text(), f"over {MAX_BYTES} bytes: {too_big}" if too_big else "", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in photos.items():
        (args.out / name).write_bytes(data)
    print(f"wrote {len(photos)} demo photos to {args.out}: {report.summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
