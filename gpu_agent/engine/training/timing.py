"""PhaseClock: where a training's wall time went (model load, class images, caching, steps, eval, save).

The trainer laps it at each phase boundary; work done inside a phase that belongs to another (checkpoints and
previews during the steps) is timed ``aside`` and taken out of the phase it interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseClock:
    def __init__(self) -> None:
        self._mark = time.perf_counter()
        self._seconds: dict[str, float] = {}
        self._aside = 0.0  # time spent aside since the last lap

    def _add(self, phase: str, seconds: float) -> None:
        self._seconds[phase] = self._seconds.get(phase, 0.0) + seconds

    def lap(self, phase: str) -> None:
        """The time since the last lap (less what was timed aside) goes to ``phase``."""
        now = time.perf_counter()
        self._add(phase, now - self._mark - self._aside)
        self._mark, self._aside = now, 0.0

    @contextmanager
    def aside(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self._add(phase, spent)
            self._aside += spent

    def timings(self) -> dict[str, float]:
        """Seconds per phase, in the order the phases first happened."""
        return {phase: round(seconds, 4) for phase, seconds in self._seconds.items()}
