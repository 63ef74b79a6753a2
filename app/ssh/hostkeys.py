"""Host key verifiers: each decides whether the key a target presents is the genuine one."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh

from app.errors import ConfigurationError
from app.ssh.errors import HostKeyNotVerifiable

log = logging.getLogger(__name__)


def sha256(key: asyncssh.SSHKey) -> str:
    """The OpenSSH-style SHA256 fingerprint of a public key."""
    return str(key.get_fingerprint("sha256"))


class HostKeyVerifier(Protocol):
    """Accepts a host key or raises HostKeyNotVerifiable with a message for the user."""

    def verify(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Return if `key` is genuine for `host`:`port`, else raise HostKeyNotVerifiable."""


def _mismatch(host: str, key: asyncssh.SSHKey, expected: Iterable[str], source: str) -> str:
    wanted = ", ".join(sorted(set(expected)))
    return (
        f"host key mismatch for {host}: it presented {sha256(key)}, but {source} expects "
        f"{wanted}. Someone may be intercepting the connection, or the host was rebuilt; "
        "refusing to connect."
    )


@dataclass(frozen=True)
class FingerprintVerifier:
    """Trusts exactly the keys whose SHA256 fingerprints are given."""

    fingerprints: frozenset[str]
    source: str = "the pinned fingerprint"

    def verify(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Accept a key whose fingerprint is pinned."""
        if sha256(key) not in self.fingerprints:
            raise HostKeyNotVerifiable(_mismatch(host, key, self.fingerprints, self.source))


@dataclass(frozen=True)
class KnownHostsVerifier:
    """Trusts the keys an OpenSSH known_hosts file lists for the host; unknown hosts fail closed."""

    path: Path
    accept_new: bool = False

    def _known_keys(self, host: str, port: int) -> list[asyncssh.SSHKey]:
        if not self.path.is_file():
            return []
        try:
            known = asyncssh.read_known_hosts(str(self.path))
        except (ValueError, OSError, asyncssh.Error):
            # asyncssh quotes the offending line ("Invalid known hosts entry: ..."): a Secret
            # mounted here by mistake would leak its first line into logs, the browser and,
            # as the disconnect reason, the target. The message names the file only.
            raise ConfigurationError(
                f"the known hosts file {self.path} is not in OpenSSH known_hosts format"
            ) from None
        return list(known.match(host, "", port if port != 22 else None)[0])

    def verify(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Accept a listed key; with accept_new, also learn the key of a host never seen."""
        trusted = self._known_keys(host, port)
        if key in trusted:
            return
        if trusted:
            raise HostKeyNotVerifiable(
                _mismatch(host, key, (sha256(k) for k in trusted), str(self.path))
            )
        if not self.accept_new:
            raise HostKeyNotVerifiable(
                f"host {host} is not in the known hosts file {self.path}; it presented "
                f"{sha256(key)}. Add its key, or pin that fingerprint after checking it."
            )
        name = host if port == 22 else f"[{host}]:{port}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="ascii") as file:
            file.write(f"{name} {key.export_public_key().decode().strip()}\n")
        log.warning("learned new host key %s for %s (accept-new)", sha256(key), name)
