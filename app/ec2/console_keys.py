"""SSH host keys an EC2 instance printed to its console, and a verifier that trusts only those."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass

import asyncssh

from app.ssh.errors import HostKeyNotVerifiable
from app.ssh.hostkeys import sha256

log = logging.getLogger(__name__)

KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
KEYS_END = "-----END SSH HOST KEY KEYS-----"
FINGERPRINTS_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
FINGERPRINTS_END = "-----END SSH HOST KEY FINGERPRINTS-----"

# What real consoles print before cloud-init's markers, each part optional and in this order:
# a kernel timestamp "[   12.345678] ", a syslog header "<14>Jul 27 10:20:35 ", the tag
# "cloud-init[1234]: " or "cloud-init: ", and cloud-init's "ec2: ". A marker counts only as the
# whole rest of its line after such a prefix: anywhere else (a log line quoting it, say a
# failed login's user name) it would let whoever writes that line choose the trusted keys.
_MARKER_PREFIX = re.compile(
    r"\s*(?:\[\s*\d+\.\d+\]\s*)?"
    r"(?:<\d{1,3}>[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d )?"
    r"(?:cloud-init(?:\[\d+\])?: ?)?"
    r"(?:ec2: ?)?"
)
# Lines inside a block may carry the same prefixes, so keys and fingerprints are found
# anywhere in the line.
_KEY_LINE = re.compile(
    r"(?<![\w-])((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+(AAAA[A-Za-z0-9+/]+={0,3})(?![A-Za-z0-9+/=])"
)
_FINGERPRINT = re.compile(r"(?<![\w:])SHA256:([A-Za-z0-9+/]{43})(?![A-Za-z0-9+/])")


def console_text(output: str | bytes | None) -> str:
    """The console as text: the API sends base64, some clients and fakes decode it already."""
    if output is None:
        return ""
    raw = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    if "-----BEGIN" in raw:
        return raw
    try:
        decoded = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        return raw
    return decoded.decode("utf-8", "replace")


def _marker(line: str) -> str:
    """The line without a known console prefix and surrounding blanks: a marker if it is one."""
    prefix = _MARKER_PREFIX.match(line)
    return line[prefix.end() if prefix else 0 :].strip()


def _last_block(lines: list[str], begin: str, end: str) -> list[str] | None:
    """The lines of the last complete begin..end block; a block cut off by truncation is skipped."""
    found: list[str] | None = None
    current: list[str] | None = None
    for line in lines:
        marker = _marker(line)
        if marker == begin:
            current = []
        elif marker == end:
            if current is not None:
                found = current
            current = None
        elif current is not None:
            current.append(line)
    return found


@dataclass(frozen=True)
class ConsoleHostKeys:
    """Host keys (OpenSSH public key blobs) and SHA256 fingerprints found on a console."""

    keys: tuple[asyncssh.SSHKey, ...]
    fingerprints: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.keys and not self.fingerprints

    @property
    def trusted_fingerprints(self) -> frozenset[str]:
        """Every fingerprint this set trusts, from either block."""
        return self.fingerprints | {sha256(key) for key in self.keys}


def parse_console_host_keys(text: str) -> ConsoleHostKeys:
    """Keys from the last complete KEYS block and fingerprints from the last FINGERPRINTS block."""
    # The latest block wins: after a rebuild or key rotation the older ones are stale.
    lines = text.splitlines()
    keys: list[asyncssh.SSHKey] = []
    for line in _last_block(lines, KEYS_BEGIN, KEYS_END) or []:
        match = _KEY_LINE.search(line)
        if match is None:
            continue
        try:
            keys.append(asyncssh.import_public_key(f"{match.group(1)} {match.group(2)}"))
        except (asyncssh.KeyImportError, ValueError):
            log.warning("skipping an unparsable %s host key on the console", match.group(1))
    fingerprints = {
        "SHA256:" + match.group(1)
        for line in _last_block(lines, FINGERPRINTS_BEGIN, FINGERPRINTS_END) or []
        if (match := _FINGERPRINT.search(line)) is not None
    }
    return ConsoleHostKeys(tuple(keys), frozenset(fingerprints))


@dataclass(frozen=True)
class ConsoleOutputVerifier:
    """Trusts a host key iff the instance's console listed it or its SHA256 fingerprint."""

    instance_id: str
    console: ConsoleHostKeys

    def verify(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Accept a key printed on the console, by value or by fingerprint."""
        if any(key.public_data == known.public_data for known in self.console.keys):
            return
        presented = sha256(key)
        if presented in self.console.fingerprints:
            return
        listed = ", ".join(sorted(self.console.trusted_fingerprints)) or "none"
        raise HostKeyNotVerifiable(
            f"host key mismatch for instance {self.instance_id} at {host}:{port}: it presented "
            f"{presented}, but the instance's console output lists {listed}. Someone may be "
            "intercepting the connection, or the address now belongs to another host; "
            "refusing to connect."
        )
