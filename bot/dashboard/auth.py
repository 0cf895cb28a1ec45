"""Token protection of the operators' pages (the dashboard, /metrics off loopback).

``Authorization: Bearer TOKEN`` on every request, or ``?token=TOKEN`` once: that opens a session (a random
id, unrelated to the token, kept in memory) in an HttpOnly cookie that expires after SESSION_TTL_S, and
redirects to the same page without the token in its address (so it leaves the browser history and any copied
link). Failed attempts are throttled per client address: after MAX_FAILURES within FAILURE_WINDOW_S every
attempt from there is answered 429 until the window has passed, right token or not. Comparisons are
constant-time; the token itself is at least 32 characters (refused at settings load otherwise).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from storage.settings import Settings

COOKIE = "photogen_dashboard"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 1000
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0


class DashboardDisabled(web.HTTPNotFound):
    def __init__(self) -> None:
        super().__init__(text="admin dashboard disabled: set DASHBOARD_TOKEN to enable it")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class OperatorAuth:
    """The sessions and the failure counts of one HTTP side."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions: dict[str, float] = {}  # session id -> expiry (clock)
        self.failures: dict[str, deque[float]] = {}

    @property
    def secret(self) -> str:
        token = self.settings.dashboard_token
        return token.get_secret_value() if token else ""

    def check(self, request: web.Request, *, sessions: bool = True) -> None:
        """Return when the request carries the token or a live session; raise the HTTP answer otherwise."""
        secret = self.secret
        if not secret:
            raise DashboardDisabled()
        client = request.remote or "?"
        self._refuse_if_throttled(client)
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer" and _same(given.strip(), secret):
                return
            self._failed(client)
            raise web.HTTPUnauthorized(text="wrong dashboard token", headers={"WWW-Authenticate": "Bearer"})
        if sessions and "token" in request.query:
            if not _same(request.query["token"], secret):
                self._failed(client)
                raise web.HTTPForbidden(text="wrong dashboard token")
            raise self._open_session(request)
        if sessions and self._live(request.cookies.get(COOKIE, "")):
            return
        raise web.HTTPUnauthorized(
            text="dashboard token required: Authorization: Bearer TOKEN, "
            "or open /admin/dashboard?token=TOKEN once",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def _open_session(self, request: web.Request) -> web.HTTPSeeOther:
        now = self.clock()
        self.sessions = {sid: until for sid, until in self.sessions.items() if until > now}
        while len(self.sessions) >= MAX_SESSIONS:  # oldest first out
            self.sessions.pop(min(self.sessions, key=self.sessions.__getitem__))
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = now + SESSION_TTL_S
        clean = request.rel_url.with_query([(k, v) for k, v in request.rel_url.query.items() if k != "token"])
        redirect = web.HTTPSeeOther(location=str(clean))
        redirect.set_cookie(
            COOKIE,
            session_id,
            httponly=True,
            samesite="Strict",
            path="/admin",
            secure=request.secure,
            max_age=int(SESSION_TTL_S),
        )
        return redirect

    def _live(self, session_id: str) -> bool:
        if not session_id:
            return False
        until = self.sessions.get(session_id)
        if until is None:
            return False
        if until <= self.clock():
            del self.sessions[session_id]
            return False
        return True

    def _recent_failures(self, client: str) -> deque[float]:
        seen = self.failures.setdefault(client, deque())
        horizon = self.clock() - FAILURE_WINDOW_S
        while seen and seen[0] <= horizon:
            seen.popleft()
        return seen

    def _refuse_if_throttled(self, client: str) -> None:
        seen = self._recent_failures(client)
        if len(seen) >= MAX_FAILURES:
            retry = max(1, int(seen[0] + FAILURE_WINDOW_S - self.clock()) + 1)
            raise web.HTTPTooManyRequests(
                text=f"too many wrong tokens: try again in {retry} s", headers={"Retry-After": str(retry)}
            )
        if not seen:
            self.failures.pop(client, None)

    def _failed(self, client: str) -> None:
        self._recent_failures(client).append(self.clock())


APP_KEY: web.AppKey[OperatorAuth] = web.AppKey("photogen_operator_auth", OperatorAuth)


def operator_auth(app: web.Application, settings: Settings) -> OperatorAuth:
    """The app's one OperatorAuth (the dashboard and /metrics share sessions and failure counts)."""
    if APP_KEY not in app:
        app[APP_KEY] = OperatorAuth(settings)
    return app[APP_KEY]
