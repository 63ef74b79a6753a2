"""Browser logins: opaque ids in a cookie, kept server-side with an expiry, revocable."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from app.errors import LoginEnded

log = logging.getLogger(__name__)

# Beyond this many live logins the oldest is dropped: only token holders can create them, but
# memory must not grow without bound.
MAX_LOGINS = 1000
# The connections of a bearer of the access token itself, which a rotation ends too.
ACCESS_KEY = "access-key"

Revoke = Callable[[LoginEnded], None]


def _digest(login_id: str) -> str:
    # Looked up by digest: a dictionary lookup's timing then says nothing about stored ids.
    return hashlib.sha256(login_id.encode()).hexdigest()


@dataclass
class Login:
    """One browser's login: when it ends, and how to end the connections made with it."""

    key: str
    expires: float
    connections: set[Revoke] = field(default_factory=set)


class LoginStore:
    """Live logins by the digest of their id, used link nonces, and the connections of each."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.clock = clock
        self._logins: dict[str, Login] = {}
        self._used_nonces: dict[str, float] = {}
        self._key_connections: set[Revoke] = set()

    def __len__(self) -> int:
        return len(self._logins)

    def create(self) -> tuple[str, Login]:
        """A new login: its secret id (for the cookie only) and its record."""
        while len(self._logins) >= MAX_LOGINS:
            oldest = min(self._logins.values(), key=lambda login: login.expires)
            self._end(oldest, LoginEnded("too many logins on this server: sign in again"))
        login_id = secrets.token_urlsafe(32)
        login = Login(_digest(login_id), self.clock() + self.ttl)
        self._logins[login.key] = login
        return login_id, login

    def find(self, login_id: str | None) -> Login | None:
        """The live login with this id, if any."""
        if not login_id:
            return None
        login = self._logins.get(_digest(login_id))
        if login is None or login.expires <= self.clock():
            return None
        return login

    def use_nonce(self, nonce: str, expiry: float) -> bool:
        """Mark a link's nonce used; False if it already was."""
        if nonce in self._used_nonces:
            return False
        self._used_nonces[nonce] = expiry
        return True

    def end(self, login_id: str | None, reason: str) -> bool:
        """End a login and its connections (logout); False if there was none."""
        login = self._logins.get(_digest(login_id)) if login_id else None
        if login is None:
            return False
        self._end(login, LoginEnded(reason))
        return True

    def _end(self, login: Login, error: LoginEnded) -> None:
        self._logins.pop(login.key, None)
        for revoke in list(login.connections):
            revoke(error)
        login.connections.clear()

    def end_all(self, reason: str) -> int:
        """End every login and every connection, forget used links; how many logins ended."""
        count = len(self._logins)
        error = LoginEnded(reason)
        for login in list(self._logins.values()):
            self._end(login, error)
        for revoke in list(self._key_connections):
            revoke(error)
        self._key_connections.clear()
        self._used_nonces.clear()
        return count

    def sweep(self) -> None:
        """End expired logins (closing their connections) and forget expired nonces."""
        now = self.clock()
        for login in [x for x in self._logins.values() if x.expires <= now]:
            log.info("a login expired")
            self._end(login, LoginEnded("your login expired: open a new link or sign in again"))
        for nonce in [n for n, expiry in self._used_nonces.items() if expiry <= now]:
            del self._used_nonces[nonce]

    @contextmanager
    def connection(self, login: Login | None, revoke: Revoke) -> Iterator[None]:
        """While open, `revoke` is called if the login (None: the access token) ends."""
        connections = self._key_connections if login is None else login.connections
        connections.add(revoke)
        try:
            yield
        finally:
            connections.discard(revoke)
