"""Photo checks benchmark: CPU time per photo of check_photos, against a naive pass on the same photos.

    python bench/photos.py [--quick]

Photos: the shipped demo set (eight ~0.1-0.25 MP JPEGs) and phone-sized JPEGs (the astronaut portrait enlarged to
4000×3000 = 12 MP, varied so none is a duplicate). "naive" is the same checks done the obvious way, measured in
this one run: every photo decoded at full size and the face searched on the full-size image. Figures are CPU
seconds of this process (a shared runner's other load does not inflate them), after the face models are loaded.
Goal: <= 0.3 s of CPU a photo for 12 MP phone photos and <= 0.2 s for the demo set.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
from PIL import Image, ImageOps

from gpu_agent.photos import PhotoCheckConfig, check_photos
from gpu_agent.photos.faces import models
from photogen.assets import DEMO_PHOTOS_DIR, demo_photos

GOAL_PHONE_S = 0.3
GOAL_SMALL_S = 0.2


def phone_photos(count: int) -> list[tuple[str, bytes]]:
    with Image.open(DEMO_PHOTOS_DIR / "01-portrait.jpg") as img:
        base = img.convert("RGB")
    out = []
    for i in range(count):
        variant = ImageOps.mirror(base) if i % 2 else base
        variant = variant.crop((i * 12, i * 6, 512, 390 + i * 6)).resize(
            (4000, 3000), Image.Resampling.BICUBIC
        )
        buf = io.BytesIO()
        variant.save(buf, "JPEG", quality=90)
        out.append((f"phone-{i}.jpg", buf.getvalue()))
    return out


def cpu_per_photo(
    photos: list[tuple[str, bytes]], config: PhotoCheckConfig, repeat: int
) -> tuple[float, int]:
    start = time.process_time()
    for _ in range(repeat):
        report = check_photos(photos, config)
    return (time.process_time() - start) / (repeat * len(photos)), len(report.good)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer photos and repeats (about a minute)")
    args = parser.parse_args()
    repeat, phones = (1, 3) if args.quick else (3, 6)
    models()
    config = PhotoCheckConfig()
    # The naive pass: no reduced JPEG decoding (min_side huge) and detection on the full image.
    naive = PhotoCheckConfig(crop_size=2048, detect_max_side=4096)
    small, phone = demo_photos(), phone_photos(phones)
    small_s, small_good = cpu_per_photo(small, config, repeat)
    phone_s, phone_good = cpu_per_photo(phone, config, repeat)
    naive_phone_s, _ = cpu_per_photo(phone, naive, 1)
    result = {
        "bench": "photos",
        "demo_cpu_s_per_photo": round(small_s, 3),
        "demo_good": f"{small_good}/{len(small)}",
        "phone_12mp_cpu_s_per_photo": round(phone_s, 3),
        "phone_good": f"{phone_good}/{len(phone)}",
        "naive_phone_12mp_cpu_s_per_photo": round(naive_phone_s, 3),
        "speedup_vs_naive": round(naive_phone_s / phone_s, 1),
        "goal": f"<= {GOAL_PHONE_S} s CPU per 12 MP photo, <= {GOAL_SMALL_S} s per demo photo",
        "goal_met": phone_s <= GOAL_PHONE_S and small_s <= GOAL_SMALL_S,
    }
    print(f"demo photos: {small_s:.3f} s CPU each ({small_good}/{len(small)} good)")
    print(
        f"12 MP phone JPEGs: {phone_s:.3f} s CPU each ({phone_good}/{len(phone)} good); "
        f"naive full-size pass {naive_phone_s:.3f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
