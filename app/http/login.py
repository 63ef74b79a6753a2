"""The login endpoints: trade a token for a login cookie, ask about it, end it."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.auth.authenticator import Authenticator, LoginRefused
from app.auth.linktoken import looks_like_link
from app.http.middleware import NO_STORE
from app.http.state import server_state

log = logging.getLogger(__name__)

# A link token is 90 characters and an access token usually under 100.
MAX_BODY = 4096
MAX_TOKEN = 1024


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _auth(request: Request) -> Authenticator:
    return server_state(request.app).auth


def _answer(status: int, body: dict[str, object]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _body(request: Request) -> bytes:
    """The request body, refused beyond MAX_BODY and if it arrives too slowly."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(server_state(request.app).settings.limits.header_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise _BadRequest(413, f"the request body exceeds {MAX_BODY} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _BadRequest(408, "the request body came too slowly") from None
    return b"".join(chunks)


async def _token(request: Request) -> str:
    """The token of a login request: JSON `{"token": ...}` or a form field `token`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _body(request)
    token: object = None
    if kind == "application/json":
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            raise _BadRequest(400, "the body is not valid JSON") from None
        if isinstance(parsed, dict):
            token = parsed.get("token")
    elif kind == "application/x-www-form-urlencoded":
        try:
            token = parse_qs(body.decode(), max_num_fields=10).get("token", [None])[0]
        except (UnicodeDecodeError, ValueError):
            raise _BadRequest(400, "the form is not valid") from None
    else:
        raise _BadRequest(415, 'send JSON {"token": ...} or a form with a token field')
    if not isinstance(token, str) or not 0 < len(token.strip()) <= MAX_TOKEN:
        raise _BadRequest(400, "the request has no token")
    return token.strip()


def _foreign(request: Request) -> JSONResponse | None:
    """A refusal for a request from another origin (a browser always says where it is from)."""
    if _auth(request).origin_ok(request.headers, request.url.scheme):
        return None
    log.warning("refused a login request from origin %r", request.headers.get("origin"))
    return _answer(403, {"error": "requests from other origins are not allowed"})


async def log_in(request: Request) -> Response:
    """POST `P` + `login`: the access token or a link token in the body becomes a login cookie."""
    if (refusal := _foreign(request)) is not None:
        return refusal
    try:
        token = await _token(request)
    except _BadRequest as exc:
        return _answer(exc.status, {"error": str(exc)})
    except ClientDisconnect:
        return _answer(400, {"error": "the client went away"})
    auth = _auth(request)
    kind = "a link" if looks_like_link(token) else "the access token"
    try:
        login_id, login = auth.log_in(token)
    except LoginRefused as exc:
        log.info("refused a login with %s from %s: %s", kind, _client(request), exc)
        return _answer(exc.status, {"error": str(exc)})
    log.info("login with %s from %s", kind, _client(request))
    lifetime = max(0, round(login.expires - auth.clock()))
    response = _answer(200, {"authenticated": True, "expires_in": lifetime})
    response.set_cookie(
        auth.cookie_name,
        login_id,
        max_age=lifetime,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        # No Path: the browser scopes the cookie to the directory of P + "login", which is P
        # even behind a proxy that strips a prefix (where the server's P is only "/").
        path=None,
    )
    return response


async def login_status(request: Request) -> Response:
    """GET `P` + `login`: whether this browser is logged in, and for how much longer."""
    auth = _auth(request)
    caller = auth.caller(request.headers, request.cookies)
    if caller is None:
        return _answer(200, {"authenticated": False})
    body: dict[str, object] = {"authenticated": True}
    if caller.login is not None:
        body["expires_in"] = max(0, round(caller.login.expires - auth.clock()))
    return _answer(200, body)


async def log_out(request: Request) -> Response:
    """POST `P` + `logout`: end this browser's login and close its connections."""
    if (refusal := _foreign(request)) is not None:
        return refusal
    auth = _auth(request)
    if auth.logins.end(request.cookies.get(auth.cookie_name), "you logged out"):
        log.info("logout from %s", _client(request))
    response = Response(status_code=204, headers=NO_STORE)
    response.set_cookie(
        auth.cookie_name,
        "",
        max_age=0,
        expires=0,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=None,  # as set: Starlette's delete_cookie would say Path=/, another cookie
    )
    return response
