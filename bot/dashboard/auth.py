"""Token protection of the admin pages: ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once, which sets an
HttpOnly cookie and redirects to the same page without the token in its address (so it leaves the browser history
and any copied link). The cookie holds a keyed hash of the token, never the token. Comparisons are constant-time."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from storage.settings import Settings

COOKIE = "photogen_dashboard"


class DashboardDisabled(web.HTTPNotFound):
    def __init__(self) -> None:
        super().__init__(text="admin dashboard disabled: set DASHBOARD_TOKEN to enable it")


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"photogen dashboard session", hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check(request: web.Request, settings: Settings) -> None:
    """Return when the request carries the dashboard token; raise the HTTP answer otherwise."""
    secret = settings.dashboard_token.get_secret_value() if settings.dashboard_token else ""
    if not secret:
        raise DashboardDisabled()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and _same(given.strip(), secret):
            return
        raise web.HTTPUnauthorized(text="wrong dashboard token", headers={"WWW-Authenticate": "Bearer"})
    if "token" in request.query:
        if not _same(request.query["token"], secret):
            raise web.HTTPForbidden(text="wrong dashboard token")
        clean = request.rel_url.with_query([(k, v) for k, v in request.rel_url.query.items() if k != "token"])
        redirect = web.HTTPSeeOther(location=str(clean))
        redirect.set_cookie(
            COOKIE,
            cookie_value(secret),
            httponly=True,
            samesite="Strict",
            path="/admin",
            secure=request.secure,
            max_age=7 * 86400,
        )
        raise redirect
    cookie = request.cookies.get(COOKIE, "")
    if cookie and _same(cookie, cookie_value(secret)):
        return
    raise web.HTTPUnauthorized(
        text="dashboard token required: Authorization: Bearer TOKEN, or open /admin/dashboard?token=TOKEN once",
        headers={"WWW-Authenticate": "Bearer"},
    )
