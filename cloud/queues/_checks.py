"""Argument checks shared by both backends, so a call SQS would refuse is refused by the embedded queue too.

The limits are SQS's: code that works against the embedded queue on one host then works against SQS unchanged.
"""

from __future__ import annotations

import re

MAX_BODY_BYTES = 256 * 1024  # SQS's classic limit; our messages are a few KiB
MAX_WAIT_S = 20  # SQS long polls at most 20 s
MAX_LEASE_S = 43_200  # SQS's visibility timeout ceiling (12 h)
MAX_SEND_DELAY_S = 900  # SQS's DelaySeconds ceiling
MAX_BATCH = 10  # SQS's MaxNumberOfMessages ceiling
DEAD_LETTER_REASON = "dead_letter_reason"  # attribute naming why a message was dead-lettered

_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
# SQS accepts only these characters in a body (the XML 1.0 character set); JSON escapes everything else.
_BAD_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"queue name {name!r}: use 1-80 letters, digits, '-' or '_'")
    return name


def check_body(body: str) -> str:
    if not isinstance(body, str):
        raise TypeError(f"message body must be str, not {type(body).__name__}")
    if not body:
        raise ValueError("message body is empty")
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise ValueError(f"message body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    bad = _BAD_CHAR.search(body)
    if bad:
        raise ValueError(f"message body holds a character queues refuse: {bad.group()!r} at {bad.start()}")
    return body


def check_seconds(what: str, value: float, ceiling: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= ceiling:
        raise ValueError(f"{what} must be between 0 and {ceiling} seconds, got {value!r}")


def check_receive(max_messages: int, wait_s: float, lease_s: int) -> None:
    if (
        isinstance(max_messages, bool)
        or not isinstance(max_messages, int)
        or not 1 <= max_messages <= MAX_BATCH
    ):
        raise ValueError(f"max_messages must be 1-{MAX_BATCH}, got {max_messages!r}")
    check_seconds("wait_s", wait_s, MAX_WAIT_S)
    check_seconds("lease_s", lease_s, MAX_LEASE_S)
