"""Spot interruptions: the Drain flag, and a watcher that raises it from EC2's instance metadata (IMDSv2).

AWS gives a spot instance two minutes between the interruption notice and the end. The notice appears at
``/latest/meta-data/spot/instance-action`` (404 until then); a rebalance recommendation, an earlier hint that the
instance is at elevated risk, at ``/latest/meta-data/events/recommendations/rebalance``. Both need an IMDSv2
session token from ``PUT /latest/api/token``. SIGTERM (docker stop, the ASG's lifecycle) raises the same flag.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.settings import Settings

log = logging.getLogger(__name__)

TOKEN_TTL_S = 21600
_TIMEOUT_S = 2.0
_BACKOFF_AFTER = 3  # consecutive connection failures before the watcher assumes it is not on EC2
_BACKOFF_S = 60.0


EC2_IMDS_URL = "http://169.254.169.254"
_EC2_MARKERS = (  # what an EC2 instance (Xen or Nitro) shows in /sys, readable without root
    ("sys/hypervisor/uuid", lambda text: text.lower().startswith("ec2")),
    ("sys/class/dmi/id/product_uuid", lambda text: text.lower().startswith("ec2")),
    ("sys/class/dmi/id/board_asset_tag", lambda text: text.startswith("i-")),
    ("sys/class/dmi/id/sys_vendor", lambda text: text.strip() == "Amazon EC2"),
)


def on_ec2(root: Path = Path("/")) -> bool:
    """True when this machine is an EC2 instance, judged from /sys without any network call."""
    for relative, matches in _EC2_MARKERS:
        try:
            text = (root / relative).read_text(errors="replace").strip()
        except OSError:
            continue
        if text and matches(text):
            return True
    return False


def imds_url_for(settings: Settings, root: Path = Path("/")) -> str:
    """The metadata address this agent polls, or "" for none: IMDS_MODE=on/off decide; auto polls EC2's own
    address only on EC2, and any other IMDS_URL (a configured metadata service) wherever it runs."""
    url = settings.imds_url.strip()
    if not url or settings.imds_mode == "off":
        return ""
    if settings.imds_mode == "on" or url.rstrip("/") != EC2_IMDS_URL:
        return url
    return url if on_ec2(root) else ""


class Drain:
    """Set once when this agent must wind down: take no new job, checkpoint and release what it holds."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.since: float | None = None  # time.monotonic() of the first request

    def request(self, reason: str) -> bool:
        """Raise the flag; True the first time (later reasons are only logged)."""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason, self.since = reason, time.monotonic()
            self._event.set()
        log.warning("draining: %s", reason)
        return True

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def elapsed(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


class ImdsClient:
    """The three IMDSv2 calls the agent needs, with the session token cached until it is refused.

    Kept over botocore's ``IMDSFetcher`` (docs/ARCHITECTURE.md): that one's token and GET calls are private
    methods, it falls back to IMDSv1 when the token call fails, and it asks for a new token on every call.
    The metadata service is link-local: requests never go through an HTTP(S)_PROXY from the environment
    (a proxy cannot reach it, and would see the session token).
    """

    def __init__(self, base_url: str, timeout_s: float = _TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _fetch_token(self) -> str:
        req = urllib.request.Request(
            f"{self.base_url}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
        )
        with self._opener.open(req, timeout=self.timeout_s) as resp:
            return resp.read().decode().strip()

    def get(self, path: str) -> str | None:
        """The body at ``/latest/meta-data/{path}``, or None on 404 (no such notice)."""
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._fetch_token()
            req = urllib.request.Request(
                f"{self.base_url}/latest/meta-data/{path}", headers={"X-aws-ec2-metadata-token": self._token}
            )
            try:
                with self._opener.open(req, timeout=self.timeout_s) as resp:
                    return resp.read().decode()
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    return None
                if err.code == 401 and attempt == 1:
                    self._token = None  # expired session token: fetch a new one once
                    continue
                raise
        return None


class SpotWatcher:
    """Polls IMDS every ``poll_s`` and requests a drain on a spot interruption or rebalance notice."""

    def __init__(
        self, imds_url: str, drain: Drain, *, poll_s: float = 5.0, on_notice: Callable[[], None] | None = None
    ) -> None:
        self.client = ImdsClient(imds_url) if imds_url else None
        self.drain = drain
        self.poll_s = poll_s
        self.notice: dict[str, object] | None = None
        self.instance_type: str | None = None
        self._on_notice = on_notice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spot-watcher", daemon=True)

    def start(self) -> SpotWatcher:
        if self.client is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def check_once(self) -> str | None:
        """One poll: the drain reason if a notice is up, else None. Raises OSError when IMDS is unreachable."""
        assert self.client is not None
        action = self.client.get("spot/instance-action")
        if action is not None:
            self.notice = _json_or_text(action)
            return f"spot interruption notice: {action.strip()[:200]}"
        rebalance = self.client.get("events/recommendations/rebalance")
        if rebalance is not None:
            self.notice = _json_or_text(rebalance)
            return f"rebalance recommendation: {rebalance.strip()[:200]}"
        return None

    def _run(self) -> None:
        client = self.client
        assert client is not None  # start() runs this thread only with a client
        failures = 0
        while not self._stop.is_set() and not self.drain.requested:
            try:
                if self.instance_type is None:
                    self.instance_type = (client.get("instance-type") or "").strip()[:64] or None
                reason = self.check_once()
                failures = 0
            except (OSError, ValueError) as err:
                failures += 1
                if failures == _BACKOFF_AFTER:
                    log.info(
                        "instance metadata at %s unreachable (%s); polling less often",
                        client.base_url,
                        err,
                    )
                reason = None
            if reason is not None:
                if self.drain.request(reason) and self._on_notice is not None:
                    self._on_notice()
                return
            self._stop.wait(_BACKOFF_S if failures >= _BACKOFF_AFTER else self.poll_s)


def _json_or_text(body: str) -> dict[str, object]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"text": body[:200]}
    return value if isinstance(value, dict) else {"value": value}
