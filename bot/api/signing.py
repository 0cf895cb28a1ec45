"""Signatures: webhook deliveries (HMAC-SHA256 over timestamp and body, with a replay window) and the
expiring result links (HMAC over the blob key and the expiry: storage.blobs.local's link signature).

Tenants verify a delivery with ``verify`` (or the same few lines in their language: docs/API.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from urllib.parse import quote, urlencode

from storage.blobs.base import InvalidKey, validate_key
from storage.blobs.local import check_signature, sign

SIGNATURE_HEADER = "Photogen-Signature"
REPLAY_WINDOW_S = 300
_HEADER = re.compile(r"t=(\d{1,12}),v1=([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SignatureError(ValueError):
    """A webhook delivery that is not genuine, or too old to accept."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Photogen-Signature`` value of a delivery: ``t={unix seconds},v1={hex HMAC-SHA256}`` over
    ``"{t}." + body`` with the endpoint's secret."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = REPLAY_WINDOW_S, now: float | None = None
) -> int:
    """Check a delivery: the header's MAC over its timestamp and the raw body, and the timestamp within
    ``tolerance_s`` of ``now`` (a captured delivery replayed later is refused). Returns the timestamp;
    raises SignatureError."""
    match = _HEADER.fullmatch(header.strip())
    if match is None:
        raise SignatureError("malformed signature header")
    timestamp, mac = int(match.group(1)), match.group(2)
    if not hmac.compare_digest(_mac(secret, timestamp, body), mac):
        raise SignatureError("signature does not match the body")
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the replay window")
    return timestamp


def result_link(secret: bytes, base_url: str, key: str, expires_at: int) -> str:
    query = urlencode({"expires": expires_at, "sig": sign(secret, key, expires_at)})
    return f"{base_url.rstrip('/')}/v1/files/{quote(key, safe='/')}?{query}"


def link_valid(secret: bytes, key: str, expires: str | None, sig: str | None) -> bool:
    """A genuine, unexpired result link; any malformed part (or a changed byte) is simply not valid."""
    if not expires or not sig or _HEX64.fullmatch(sig) is None or not expires.isdigit():
        return False
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return check_signature(secret, key, expires, sig)
