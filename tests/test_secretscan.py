"""The end-of-run search for secrets (tests/secretscan.py) finds what it must and only that."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_sshd import keygen
from tests.secretscan import scan


@pytest.fixture
def planted() -> Iterator[Path]:
    """A directory outside pytest's own, so the leaks planted here do not fail the run."""
    with tempfile.TemporaryDirectory(prefix="secretscan-") as directory:
        yield Path(directory)


def test_a_token_a_cookie_and_a_private_key_are_found_where_they_leaked(planted: Path) -> None:
    server = planted / "server"
    server.mkdir()
    (server / "token").write_text("access-token-0123456789abcdef\n")
    (server / "issued-secrets").write_text("cookie-value-0123456789abcdef\n")
    keygen(planted / "client_ed25519")
    key_line = (planted / "client_ed25519").read_text().splitlines()[2]
    (server / "server.log").write_text("INFO fine\nINFO cookie-value-0123456789abcdef\n")
    (server / "session.cast").write_text('[0.1, "o", "access-token-0123456789abcdef"]\n')
    (planted / "spans.json").write_text('{"attributes": {"k": "' + key_line + '"}}\n')
    leaks = {(leak.kind, leak.where.name) for leak in scan(planted, [planted])}
    assert leaks == {
        ("issued-secrets", "server.log"),
        ("token", "session.cast"),
        ("private key", "spans.json"),
    }


def test_clean_logs_and_the_secret_files_themselves_are_no_leak(planted: Path) -> None:
    (planted / "token").write_text("access-token-0123456789abcdef\n")
    keygen(planted / "host_ed25519")
    (planted / "server.log").write_text("INFO session abc started\n")
    (planted / "host_ed25519.pub.txt").write_text((planted / "host_ed25519.pub").read_text())
    assert scan(planted, [planted]) == []
