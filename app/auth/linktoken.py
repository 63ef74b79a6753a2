"""Link tokens: short-lived, single-use credentials minted offline from the access token.

`v1.<expiry>.<nonce>.<mac>`: the Unix time after which it is refused, 16 random bytes, and
HMAC-SHA256 under the access token of the base path, the expiry and the nonce (base64url
without padding). The server remembers the nonces it has accepted until they expire, so each
link logs in once; whoever holds the access token can mint links without asking the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

VERSION = "v1"
_CONTEXT = b"ec2-terminal link v1"
# A link minted on a machine whose clock is ahead must still work.
CLOCK_SKEW = 60
_SHAPE = re.compile(r"v1\.(\d{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


class LinkProblem(StrEnum):
    """Why a link token is refused, as the user should hear it."""

    INVALID = "That token is not valid for this terminal."
    EXPIRED = "That link has expired: ask for a new one."
    USED = "That link has already been used: ask for a new one."
    TOO_LONG = "That link is valid for longer than this server accepts: ask for a new one."


class LinkRefused(Exception):
    """A link token was refused; `problem` says why."""

    def __init__(self, problem: LinkProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class Link:
    """A verified link token: its nonce (to remember as used) and its expiry."""

    nonce: str
    expiry: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(key: str, base_path: str, expiry: int, nonce: str) -> str:
    message = b"\0".join((_CONTEXT, base_path.encode(), str(expiry).encode(), nonce.encode()))
    return _b64(hmac.new(key.encode(), message, hashlib.sha256).digest())


def looks_like_link(token: str) -> bool:
    """Whether `token` has a link token's shape (else it may be the access token itself)."""
    return token.startswith(VERSION + ".")


def mint(key: str, base_path: str, ttl: float, now: float) -> str:
    """A new link token for the server at `base_path`, valid for `ttl` seconds from `now`."""
    expiry = int(now + ttl)
    nonce = _b64(secrets.token_bytes(16))
    return f"{VERSION}.{expiry}.{nonce}.{_mac(key, base_path, expiry, nonce)}"


def verify(token: str, key: str, base_path: str, now: float, max_ttl: float) -> Link:
    """The link in `token` if its MAC is right and it is current; raises LinkRefused."""
    match = _SHAPE.fullmatch(token)
    if match is None:
        raise LinkRefused(LinkProblem.INVALID)
    expiry, nonce, mac = int(match.group(1)), match.group(2), match.group(3)
    if not hmac.compare_digest(mac.encode(), _mac(key, base_path, expiry, nonce).encode()):
        raise LinkRefused(LinkProblem.INVALID)
    if expiry <= now:
        raise LinkRefused(LinkProblem.EXPIRED)
    if expiry > now + max_ttl + CLOCK_SKEW:
        raise LinkRefused(LinkProblem.TOO_LONG)
    return Link(nonce, expiry)
