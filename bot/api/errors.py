"""The API's errors: always JSON ``{"error": {"code", "message"}}`` with a clear message, never a path,
internals or another tenant's data."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.errors import Busy, NotAllowed, NotFound, Refused, UserFacingError


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message}, **self.extra}
        return web.json_response(body, status=self.status, headers=self.headers)


_SERVICE_ERRORS: dict[type[UserFacingError], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    Refused: (422, "refused"),
    Busy: (429, "limit_reached"),
    NotAllowed: (403, "not_allowed"),
}


def from_service(err: UserFacingError) -> ApiError:
    status, code = _SERVICE_ERRORS.get(type(err), (422, "refused"))
    return ApiError(status, code, err.message)


#: aiohttp's own refusals (unknown route, wrong method, body too large …) as API errors.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
