"""Errors a member or admin caused, carrying the short message they will see (ephemeral).

Anything else that goes wrong is a bug: the member sees a generic apology and the log gets the traceback.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """Raised by any handler; `tree.on_error` and the button wrapper turn it into an ephemeral reply."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAllowed(UserFacingError):
    """Not the member's order/model/image, not an admin, banned, or a channel the bot may not be used in."""


class NotFound(UserFacingError):
    """The order, model or image does not exist (or is not the caller's: we do not tell them apart)."""


class Refused(UserFacingError):
    """Input refused: bad photos, blocked words, a bad option value."""


class Busy(UserFacingError):
    """Rate limit, concurrent-order limit, daily quota, paused studio, not enough credits."""
