"""check_photos: decode, find the face, measure, crop — then compare the photos with each other."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from gpu_agent.photos.config import PhotoCheckConfig
from gpu_agent.photos.decode import decode_photo
from gpu_agent.photos.errors import PhotoTooLarge, UnreadablePhoto
from gpu_agent.photos.faces import Face, crop_box, detect_faces, detection_copy, embed_face
from gpu_agent.photos.quality import perceptual_hash, sharpness
from gpu_agent.photos.report import PhotoResult, PhotoSetReport, Verdict


@dataclass
class _Candidate:
    """What the set-wide checks need of a photo that passed the per-photo checks."""

    result: PhotoResult
    phash: imagehash.ImageHash
    embedding: np.ndarray


def check_photos(photos: Sequence[tuple[str, bytes]], config: PhotoCheckConfig | None = None) -> PhotoSetReport:
    """Check a member's photos (label, file bytes) for training; good ones come back with their face crops.

    Per photo: readable, one clear face, large enough, sharp. Across the set: no near-duplicates (the later copy
    is dropped) and one person (faces far from the set's medoid face are dropped). Blocking and CPU-bound (~0.2 s a
    photo): call it from a worker thread in async code.
    """
    config = config or PhotoCheckConfig()
    results: list[PhotoResult] = []
    candidates: list[_Candidate] = []
    for index, (name, data) in enumerate(photos, 1):
        result, candidate = _examine(index, name, data, config)
        results.append(result)
        if candidate is not None:
            candidates.append(candidate)
    survivors = _drop_duplicates(candidates, config.duplicate_max_distance)
    _drop_other_people(survivors, config.same_person_max_distance)
    for candidate in candidates:
        if not candidate.result.ok:
            candidate.result.crop = None
            candidate.result.crop_jpeg = b""
            candidate.result.crop_sha256 = ""
    return PhotoSetReport(results, config.min_good_photos)


def _examine(index: int, name: str, data: bytes, config: PhotoCheckConfig) -> tuple[PhotoResult, _Candidate | None]:
    result = PhotoResult(index, name, Verdict.OK, sha256=hashlib.sha256(data).hexdigest())
    try:
        decoded = decode_photo(data, name, max_bytes=config.max_photo_bytes, max_pixels=config.max_photo_pixels,
                               min_side=2 * config.crop_size)
    except PhotoTooLarge as err:
        return _reject(result, Verdict.TOO_LARGE, err.reason), None
    except UnreadablePhoto as err:
        return _reject(result, Verdict.UNREADABLE, f"this is not a picture we can read: {err.reason}"), None

    image = decoded.image
    array, back = detection_copy(image, config.detect_max_side)
    faces, rects = detect_faces(array, back, config.detect_upsample)
    face, rect, others = _main_face(faces, rects, config)
    if face is None:
        return _reject(result, Verdict.NO_FACE, "we could not find a face. Use a photo where your face is "
                       "clearly visible, facing the camera, not covered and not too small"), None
    result.face_box = _box(face)
    if others:
        return _reject(result, Verdict.SEVERAL_FACES, f"there are {others + 1} faces of about the same size; "
                       "we cannot tell which one is you. Use photos of you alone"), None
    if face.size * decoded.scale < config.min_face_px:
        return _reject(result, Verdict.FACE_TOO_SMALL, f"your face is only {face.size * decoded.scale:.0f} pixels "
                       f"wide (at least "
                       f"{config.min_face_px} needed). Use a closer or higher-resolution photo"), None
    result.sharpness = sharpness(image, face, config.blur_size)
    if result.sharpness < config.min_sharpness:
        return _reject(result, Verdict.BLURRY, "your face is blurry (out of focus or moving). Use a sharp "
                       "photo"), None

    crop = image.crop(crop_box(face, image.size, config.crop_scale)).resize(
        (config.crop_size, config.crop_size), Image.Resampling.LANCZOS
    )
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=config.jpeg_quality, optimize=True)
    result.crop, result.crop_jpeg = crop, buf.getvalue()
    result.crop_sha256 = hashlib.sha256(result.crop_jpeg).hexdigest()
    return result, _Candidate(result, perceptual_hash(image), embed_face(array, rect))


def _main_face(faces: list[Face], rects: list[Any], config: PhotoCheckConfig) -> tuple[Face | None, Any, int]:
    """The largest confident face, its dlib rectangle, and how many other clear faces are about as large."""
    main = next((i for i, f in enumerate(faces) if f.score >= config.min_face_score), None)
    if main is None:
        return None, None, 0
    rivals = sum(
        1 for i, f in enumerate(faces)
        if i != main and f.score >= config.rival_min_score and f.size >= config.similar_face_ratio * faces[main].size
    )
    return faces[main], rects[main], rivals


def _drop_duplicates(candidates: list[_Candidate], max_distance: int) -> list[_Candidate]:
    kept: list[_Candidate] = []
    for candidate in candidates:
        twin = next((k for k in kept if candidate.phash - k.phash <= max_distance), None)
        if twin is None:
            kept.append(candidate)
        else:
            _reject(candidate.result, Verdict.DUPLICATE, f"it is (nearly) the same picture as {twin.result.name}. "
                    "Use photos taken at different moments, angles or places")
    return kept


def _drop_other_people(candidates: list[_Candidate], max_distance: float) -> None:
    if len(candidates) < 2:
        return
    vectors = np.stack([c.embedding for c in candidates])
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1)
    medoid = int(np.argmin(distances.sum(axis=1)))
    for candidate, distance in zip(candidates, distances[medoid], strict=True):
        candidate.result.identity_distance = float(distance)
        if distance > max_distance:
            _reject(candidate.result, Verdict.OTHER_PERSON, "this looks like a different person from the one in "
                    "most of your photos. Send photos of one person only")


def _reject(result: PhotoResult, verdict: Verdict, reason: str) -> PhotoResult:
    result.verdict, result.reason = verdict, reason
    return result


def _box(face: Face) -> tuple[int, int, int, int]:
    return round(face.left), round(face.top), round(face.left + face.width), round(face.top + face.height)
