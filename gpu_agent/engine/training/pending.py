"""The run's photos, given at once or still being prepared by the caller while the trainer gets on with the work
that does not need them (loading the base model, rendering class images).

The agent re-checks and augments a member's photos on the CPU; none of that is needed before the photos are
encoded, so it passes a ``Future`` and the trainer waits for it only there. The wait is what remains of the
preparation on the critical path: the trainer's clock laps it as ``photos``. A preparation that failed ends
the run at the next phase boundary (or class-image step) with its own error, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from PIL import Image

Photos = list[Image.Image] | Future  # Future[list[Image.Image]]
"""What ``train_lora`` takes: decoded photos, or a Future of them."""


class PendingPhotos:
    def __init__(self, photos: Photos, check: Callable[[list[Image.Image]], None]) -> None:
        self._photos = photos
        self._check = check  # the trainer's own input check, run once the photos are there
        self._got: list[Image.Image] | None = None
        if not isinstance(photos, Future):
            check(photos)  # given at once: refused before anything is loaded
            self._got = list(photos)

    @property
    def pending(self) -> bool:
        """Whether the photos came as a Future (the trainer then times its wait for them)."""
        return isinstance(self._photos, Future)

    def poll(self) -> None:
        """Raise the preparation's error now if it has already failed; return at once otherwise."""
        if isinstance(self._photos, Future) and self._photos.done():
            error = self._photos.exception()
            if error is not None:
                raise error

    def step_callback(self) -> Callable[..., dict[str, Any]]:
        """A diffusers ``callback_on_step_end`` that polls between denoising steps."""

        def on_step_end(_pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            self.poll()
            return kwargs

        return on_step_end

    def get(self) -> list[Image.Image]:
        """The photos (waiting for them if needed); the preparation's error if it failed."""
        if self._got is None:
            got = self._photos.result()  # type: ignore[union-attr]
            self._check(got)
            self._got = list(got)
        return self._got
