"""The two safety hooks around a render: a prompt check before it and an image check after it.

The defaults let everything through. They are the places to plug a real classifier: a prompt moderation model
or word list for ``prompt_check``, an NSFW/likeness image classifier for ``image_check``. The renderer calls
them for every render, including variations and upscales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image


class PromptRefused(Exception):
    """A prompt check said no. ``reason`` is shown to the member, so it must not quote anything private."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageVerdict:
    safe: bool
    reason: str = ""


PromptCheck = Callable[[str], None]
"""Called with the final prompt (template filled); raises PromptRefused to stop the render."""

ImageCheck = Callable[[Image.Image], ImageVerdict]
"""Called with each finished image; an unsafe verdict replaces the image with a placeholder."""


def allow_all_prompts(prompt: str) -> None:
    """Default prompt check: accepts everything. Plug a moderation model or word list in here."""


def allow_all_images(image: Image.Image) -> ImageVerdict:
    """Default image check: accepts everything. Plug an NSFW or likeness classifier in here."""
    return ImageVerdict(safe=True)


def placeholder(size: tuple[int, int]) -> Image.Image:
    """What a member gets instead of an image that failed the check.

    Solid black rather than a blur: a strong blur of an explicit picture still shows its shapes and colours.
    """
    return Image.new("RGB", size, (0, 0, 0))
