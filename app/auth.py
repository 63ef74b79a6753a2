"""Who may use the terminal: the access token, the cookie derived from it, and the Origin check."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

COOKIE_PREFIX = "ec2_terminal_auth_"
_COOKIE_CONTEXT = b"ec2-terminal cookie v2\0"


@dataclass(frozen=True)
class Authenticator:
    """Checks tokens in constant time; the cookie holds a MAC of the token, never the token.

    The cookie's name and MAC both include the base path: sessions served side by side on one
    host (`/t/ns/a/`, `/t/ns/b/`) never accept each other's cookie, even with one token.
    """

    token: str | None = field(repr=False)
    allowed_origins: tuple[str, ...] = ()
    base_path: str = "/"

    @property
    def cookie_name(self) -> str:
        """The auth cookie's name under this base path."""
        return COOKIE_PREFIX + hashlib.sha256(self.base_path.encode()).hexdigest()[:16]

    def token_ok(self, candidate: str | None) -> bool:
        """Whether `candidate` is the access token."""
        if not self.token or candidate is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def cookie_value(self) -> str:
        """What the auth cookie holds: useless as a token, and changes when the token does."""
        assert self.token
        message = _COOKIE_CONTEXT + self.base_path.encode()
        return hmac.new(self.token.encode(), message, hashlib.sha256).hexdigest()

    def cookie_ok(self, candidate: str | None) -> bool:
        """Whether `candidate` is the cookie this server set."""
        if not self.token or candidate is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.cookie_value().encode())

    def request_ok(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """Whether a request carries the cookie or an `Authorization: Bearer` token."""
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credential.strip()):
            return True
        return self.cookie_ok(cookies.get(self.cookie_name))

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


def _without_default_port(netloc: str, scheme: str) -> str:
    """`host:443` as `host` for https (and `:80` for http): browsers leave the default out."""
    default = ":443" if scheme == "https" else ":80"
    return netloc.removesuffix(default)
