"""One interaction as a test sees it: what was sent to the bot, and every answer the bot gave to it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from photogen.discord_sim.models import SimChannel, SimMember, SimMessage

if TYPE_CHECKING:
    from photogen.discord_sim.server import DiscordSim

# Interaction callback types (Discord's numbers).
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = (
    1,
    4,
    5,
    6,
    7,
    8,
    9,
)


class SimError(Exception):
    """A test or the bot did something the sim (or Discord) would not allow; the message says what."""


class SimTimeout(SimError, TimeoutError):
    """The bot did not do what the test waited for in time."""


@dataclass
class SimResponse:
    """The bot's initial callback to an interaction."""

    type: int
    data: dict[str, Any]
    latency_s: float
    message: SimMessage | None = None

    @property
    def deferred(self) -> bool:
        return self.type in (DEFERRED_MESSAGE, DEFERRED_UPDATE)

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & 64)

    @property
    def content(self) -> str:
        return self.data.get("content") or ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.data.get("embeds") or []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.data.get("components") or []

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete results (type 8)."""
        return self.data.get("choices") or []


@dataclass(eq=False)
class SimInteraction:
    sim: DiscordSim = field(repr=False)
    id: int
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete, 5 modal submit
    member: SimMember
    channel: SimChannel
    payload: dict[str, Any] = field(repr=False)
    message: SimMessage | None = None  # the clicked message, for components
    created: float = field(default_factory=time.monotonic)
    response: SimResponse | None = None
    original: SimMessage | None = None
    followups: list[SimMessage] = field(default_factory=list)
    expired: bool = False
    _followups_taken: int = 0

    @property
    def responded(self) -> bool:
        return self.response is not None

    async def wait_response(self, timeout: float | None = None) -> SimResponse:
        """The initial callback (a message, a defer, an update, choices or a modal).

        The default timeout is the sim's interaction deadline (3 s, as on Discord)."""
        limit = timeout if timeout is not None else (self.sim.interaction_deadline or 3.0)
        await self._wait(
            lambda: self.response is not None,
            limit,
            f"the bot did not answer interaction {self.id} ({self.describe()}) within {limit:.1f} s",
        )
        assert self.response is not None
        return self.response

    async def wait_followup(self, timeout: float = 10.0) -> SimMessage:
        """The next followup message not yet returned by an earlier call."""
        wanted = self._followups_taken + 1
        await self._wait(
            lambda: len(self.followups) >= wanted,
            timeout,
            f"no followup #{wanted} to interaction {self.id} ({self.describe()}) within {timeout:.1f} s",
        )
        self._followups_taken = wanted
        return self.followups[wanted - 1]

    async def wait_original(
        self, predicate: Callable[[SimMessage], bool], timeout: float = 10.0
    ) -> SimMessage:
        """The original response message (or, for a click, the clicked message) once it satisfies predicate."""

        def ready() -> bool:
            return self.original is not None and predicate(self.original)

        await self._wait(
            ready,
            timeout,
            f"the original response of interaction {self.id} ({self.describe()}) never matched "
            f"within {timeout:.1f} s; it is {self.original!r}",
        )
        assert self.original is not None
        return self.original

    def expire(self) -> None:
        """Kill the token, as Discord does after 15 minutes; later webhook calls get 401 Invalid Webhook Token."""
        self.expired = True

    def describe(self) -> str:
        data = self.payload.get("data", {})
        return data.get("custom_id") or "/" + data.get("name", "?")

    async def _wait(self, ready: Callable[[], bool], timeout: float, why: str) -> None:
        try:
            await self.sim.wait_until(ready, timeout)
        except SimTimeout:
            raise SimTimeout(why) from None
