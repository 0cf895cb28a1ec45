"""Photo preparation for training, torch-free: the bot runs it at the door, the agent again before training.

``check_photos(photos, config) -> PhotoSetReport`` decodes each upload safely, finds one clear face, measures
sharpness, crops a face-centred square at training resolution, and across the set drops near-duplicates and other
people. ``check_crops(crops, config)`` is the agent's re-check of the stored crops, which the door also runs on
the crops it keeps (so the two agree). ``read_zip`` unpacks a /train .zip safely; ``decode_photo`` is the
safe decoder alone.
"""

from gpu_agent.photos.archive import ByteBudget, count_entries, read_zip
from gpu_agent.photos.check import check_crops, check_photos
from gpu_agent.photos.config import PhotoCheckConfig
from gpu_agent.photos.decode import DecodedPhoto, decode_photo, sniff_format
from gpu_agent.photos.errors import (
    AnimatedPhoto,
    EmptyPhoto,
    FileTooLarge,
    PhotoError,
    PhotoTooLarge,
    TooManyPixels,
    TruncatedPhoto,
    UnreadablePhoto,
    UnsupportedFormat,
    ZipRefused,
    size_words,
)
from gpu_agent.photos.faces import FaceModelsMissing
from gpu_agent.photos.report import PhotoResult, PhotoSetReport, Verdict, few_photos_advice

__all__ = [
    "AnimatedPhoto",
    "ByteBudget",
    "DecodedPhoto",
    "EmptyPhoto",
    "FaceModelsMissing",
    "FileTooLarge",
    "PhotoCheckConfig",
    "PhotoError",
    "PhotoResult",
    "PhotoSetReport",
    "PhotoTooLarge",
    "TooManyPixels",
    "TruncatedPhoto",
    "UnreadablePhoto",
    "UnsupportedFormat",
    "Verdict",
    "ZipRefused",
    "check_crops",
    "check_photos",
    "count_entries",
    "decode_photo",
    "few_photos_advice",
    "read_zip",
    "size_words",
    "sniff_format",
]
