"""Few-shot benchmark: the CPU cost of augmenting a three-photo set into a training set, and whether every
augmented picture still shows the same person.

    python bench/fewshot.py [--quick]

Sets: three photos of each person, cropped at the door by check_photos at 512 px as a /train stores them — Eileen
Collins (the shipped demo photos), Grace Hopper (photogen/assets/other_faces; three framings of her portrait) and,
without --quick, Lionel Messi (tests/data/faces/messi5.jpg; three framings). Each set is augmented as the agent does
(gpu_agent/photos/augment.py, FEWSHOT_VARIANTS_PER_PHOTO new pictures a photo: closer crops, mirror images, light
and colour, new backgrounds behind the GrabCut person mask). Cost: process CPU time of augment_files on the set,
face models loaded beforehand, median of the runs. Agreement: each augmented picture is described with the agent's
face descriptor (torch loaded: gpu_agent.photos.face_net) and must lie within dlib's same-person distance (0.6)
of its own photo and nearer to its own person's photos than to any other person's.
Goal: <= 2 s CPU for a three-photo set; 100 % agreement. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import numpy as np
import torch  # noqa: F401 - the agent's descriptor backend (gpu_agent.photos.faces.descriptor_backend)
from PIL import Image

from gpu_agent.photos import PhotoCheckConfig, check_photos
from gpu_agent.photos.augment import augment_files
from gpu_agent.photos.faces import descriptor_backend, models
from gpu_agent.photos.likeness import SAME_PERSON_MAX_DISTANCE, describe_crop, open_image
from photogen.assets import OTHER_PERSON_PHOTO, demo_photos
from storage.settings import load_settings

GOAL_CPU_S = 2.0
GOAL_AGREEMENT = 1.0
MESSI = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces" / "messi5.jpg"


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _framings(img: Image.Image, boxes: list[tuple[int, int, int, int]], size: int) -> list[tuple[str, bytes]]:
    return [
        (f"f{n}.jpg", _jpeg(img.crop(box).resize((size, size), Image.Resampling.LANCZOS)))
        for n, box in enumerate(boxes)
    ]


def people(quick: bool) -> dict[str, list[tuple[str, bytes]]]:
    demo = demo_photos()
    hopper = Image.open(OTHER_PERSON_PHOTO).convert("RGB")
    w, h = hopper.size
    sets = {
        "eileen-collins": [demo[0], demo[2], demo[4]],
        "grace-hopper": _framings(
            hopper,
            [(0, 0, w, h), (w // 10, 0, w, h * 9 // 10), (0, h // 12, w * 11 // 12, h)],
            max(w, h),
        ),
    }
    if not quick:
        messi = Image.open(MESSI).convert("RGB")
        sets["lionel-messi"] = _framings(
            messi, [(150, 30, 340, 220), (140, 20, 350, 230), (160, 40, 330, 210)], 570
        )
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="two people, three timing runs (well under 2 min)"
    )
    args = parser.parse_args()
    settings = load_settings()
    variants = settings.fewshot_variants_per_photo
    config = PhotoCheckConfig(min_good_photos=3, crop_size=512)
    models()
    runs = 3 if args.quick else 5
    figures: dict[str, dict[str, object]] = {}
    descriptors: dict[str, list[np.ndarray]] = {}
    augmented: dict[str, list[tuple[Path, np.ndarray]]] = {}
    cpu_all: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for person, photos in people(args.quick).items():
            report = check_photos(photos, config)
            if len(report.good) != 3:
                raise SystemExit(f"{person}: {len(report.good)} of 3 photos pass the door: {report.text()}")
            folder = Path(tmp) / person
            folder.mkdir()
            paths = []
            for n, result in enumerate(report.good):
                path = folder / f"{n:02d}.jpg"
                path.write_bytes(result.crop_jpeg)
                paths.append(path)
            cpu, wall = [], []
            for run in range(runs):
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                made = augment_files(paths, folder / f"aug{run}", variants=variants, seed=run)
                cpu.append(time.process_time() - start_cpu)
                wall.append(time.perf_counter() - start_wall)
            cpu_all.extend(cpu)
            own = [describe_crop(open_image(p.read_bytes())) for p in paths]  # type: ignore[arg-type]
            descriptors[person] = [d for d in own if d is not None]
            originals = {p.stem: d for p, d in zip(paths, own, strict=True)}
            augmented[person] = [(p, originals[p.stem.split("-")[0]]) for p in made.paths[len(paths) :]]
            figures[person] = {
                "photos": made.photos,
                "images": made.images,
                "cpu_s_median": round(statistics.median(cpu), 3),
                "wall_s_median": round(statistics.median(wall), 3),
            }
        agree = total = 0
        misses: list[str] = []
        for person, pictures in augmented.items():
            for path, original in pictures:
                total += 1
                d = describe_crop(open_image(path.read_bytes()))  # type: ignore[arg-type]
                if d is None or original is None:
                    misses.append(f"{person}/{path.name}: no face")
                    continue
                same = float(np.linalg.norm(d - original))
                nearest = {
                    who: min(float(np.linalg.norm(d - o)) for o in ds) for who, ds in descriptors.items()
                }
                if same <= SAME_PERSON_MAX_DISTANCE and min(nearest, key=nearest.__getitem__) == person:
                    agree += 1
                else:
                    misses.append(f"{person}/{path.name}: {same:.2f}")
    worst_cpu = max(float(f["cpu_s_median"]) for f in figures.values())  # type: ignore[arg-type]
    agreement = agree / total if total else 0.0
    result = {
        "bench": "fewshot",
        "quick": args.quick,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        "descriptor_backend": descriptor_backend(),
        "variants_per_photo": variants,
        "sets": figures,
        "augment_cpu_s_worst_set": round(worst_cpu, 3),
        "augmented_pictures": total,
        "same_person_agreement": round(agreement, 4),
        "misses": misses[:10],
        "goal": f"<= {GOAL_CPU_S} s CPU to augment a 3-photo set; {GOAL_AGREEMENT:.0%} same-person agreement",
        "goal_met": worst_cpu <= GOAL_CPU_S and agreement >= GOAL_AGREEMENT,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
