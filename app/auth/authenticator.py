"""Trades tokens for logins and recognizes callers (cookie or bearer); checks Origin."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.auth import linktoken
from app.auth.accesskey import AccessKey
from app.auth.linktoken import LinkProblem, LinkRefused
from app.auth.logins import Login, LoginStore

log = logging.getLogger(__name__)

COOKIE_PREFIX = "ec2_terminal_auth_"
ROTATED = "the access token was changed: sign in again"


class LoginRefused(Exception):
    """A token was not accepted for a login: `str(error)` is for the user, `status` for HTTP."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who made a request: a browser's login, or (login None) a holder of the access token."""

    login: Login | None


@dataclass
class Authenticator:
    """Trades tokens for logins and recognizes callers; tokens are compared in constant time.

    The cookie holds an opaque login id that only this server knows, named after the base path:
    sessions served side by side on one host never accept each other's cookie.
    """

    key: AccessKey = field(repr=False)
    logins: LoginStore
    base_path: str = "/"
    allowed_origins: tuple[str, ...] = ()
    link_ttl: float = 300.0
    clock: Callable[[], float] = time.time

    @property
    def cookie_name(self) -> str:
        """The login cookie's name under this base path."""
        return COOKIE_PREFIX + hashlib.sha256(self.base_path.encode()).hexdigest()[:16]

    def log_in(self, token: str) -> tuple[str, Login]:
        """A new login for the access token or an unused link token; raises LoginRefused."""
        key = self.key.value
        if key is None:
            raise LoginRefused("this terminal has no access token configured", 503)
        if linktoken.looks_like_link(token):
            try:
                link = linktoken.verify(token, key, self.base_path, self.clock(), self.link_ttl)
            except LinkRefused as exc:
                raise LoginRefused(str(exc)) from None
            if not self.logins.use_nonce(link.nonce, link.expiry):
                log.warning("refused a link that was already used")
                raise LoginRefused(LinkProblem.USED.value)
        elif not self.key.matches(token):
            raise LoginRefused(LinkProblem.INVALID.value)
        return self.logins.create()

    def caller(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Caller | None:
        """Who sent a request with these headers: by `Authorization: Bearer` or the cookie."""
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.key.matches(credential.strip()):
            return Caller(None)
        login = self.logins.find(cookies.get(self.cookie_name))
        return Caller(login) if login is not None else None

    def origin_ok(self, headers: Mapping[str, str], scheme: str) -> bool:
        """Browsers always send Origin: it must be this scheme and host, or an allowed origin.

        `scheme` is the request's as uvicorn resolved it (X-Forwarded-Proto from a trusted
        proxy): `http`/`ws` or `https`/`wss`.
        """
        origin = headers.get("origin")
        if origin is None:
            return True
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        expected = "https" if scheme in ("https", "wss") else "http"
        if parts.scheme != expected:
            return False
        netloc = _without_default_port(parts.netloc.lower(), expected)
        host = _without_default_port(headers.get("host", "").lower(), expected)
        return hmac.compare_digest(netloc.encode(), host.encode())

    def check(self) -> None:
        """Follow a changed token file (ending every login and connection) and expire logins."""
        if self.key.reload():
            ended = self.logins.end_all(ROTATED)
            log.warning(
                "the access token changed: ended %d login(s), every open connection and link",
                ended,
            )
        self.logins.sweep()

    @contextlib.asynccontextmanager
    async def maintained(self, interval: float) -> AsyncIterator[None]:
        """Run `check` every `interval` seconds while the context is open."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    self.check()
                except Exception:  # a bug here must not end the checks for good
                    log.exception("checking the access token and logins failed")

        task = asyncio.create_task(loop(), name="auth-maintenance")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _without_default_port(netloc: str, scheme: str) -> str:
    """`host:443` as `host` for https (and `:80` for http): browsers leave the default out."""
    default = ":443" if scheme == "https" else ":80"
    return netloc.removesuffix(default)
