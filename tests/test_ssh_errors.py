"""Failures reaching the target: each ends in an ERROR frame with a clear, specific message."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd, keygen
from tests.wsclient import TerminalClient, connected, open_client

pytestmark = pytest.mark.anyio


async def attempt(server_factory: ServerFactory, sshd: Sshd | None, **flags: str) -> TerminalClient:
    """Open a session and read until the server closes the socket."""
    server = server_factory(sshd, **flags)
    client = await open_client(server.base_url, server.token)
    await client.hello()
    await client.until_closed(timeout=30)
    return client


async def test_pinned_fingerprint_mismatch_refuses_before_login(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    wrong = "SHA256:" + "A" * 43
    client = await attempt(
        server_factory, sshd, host_key_policy="fingerprint", host_key_fingerprint=wrong
    )
    assert client.error is not None
    assert client.error["code"] == "host_key_mismatch"
    assert sshd.host_key_sha256 in client.error["message"]
    assert wrong in client.error["message"]
    assert "Accepted publickey" not in sshd.log()
    assert not any(s.get("state") == "connected" for s in client.statuses)


async def test_known_hosts_with_another_key_is_a_mismatch(
    server_factory: ServerFactory, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other") / "key"
    known = other.parent / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {keygen(other)}\n")
    client = await attempt(server_factory, sshd, known_hosts=str(known))
    assert client.error is not None
    assert client.error["code"] == "host_key_mismatch"
    assert "host key mismatch" in client.error["message"]
    assert "Accepted publickey" not in sshd.log()


async def test_unknown_host_fails_closed(
    server_factory: ServerFactory, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    known = tmp_path_factory.mktemp("known") / "known_hosts"
    known.write_text("")
    client = await attempt(server_factory, sshd, known_hosts=str(known))
    assert client.error is not None
    assert client.error["code"] == "host_key_mismatch"
    assert "not in the known hosts file" in client.error["message"]


async def test_accept_new_learns_a_first_seen_key_only_when_asked(
    server_factory: ServerFactory, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    known = tmp_path_factory.mktemp("known") / "known_hosts"
    server = server_factory(sshd, host_key_policy="accept-new", known_hosts=str(known))
    client = await connected(server)
    assert sshd.host_public_key.split()[1] in known.read_text()
    await client.ws.close()


async def test_wrong_user_key_is_an_authentication_failure(
    server_factory: ServerFactory, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    stranger = tmp_path_factory.mktemp("stranger") / "key"
    keygen(stranger)
    client = await attempt(server_factory, sshd, key_file=str(stranger))
    assert client.error is not None
    assert client.error["code"] == "auth_failed"
    assert "refused the login" in client.error["message"]


async def test_closed_port_is_refused(server_factory: ServerFactory, sshd: Sshd) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = await attempt(server_factory, sshd, port=str(port))
    assert client.error is not None
    assert client.error["code"] == "connection_refused"


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP but never says a word, like a black-holed SSH server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_silent_target_times_out_within_the_connect_timeout(
    server_factory: ServerFactory, sshd: Sshd, silent_listener: int
) -> None:
    started = time.monotonic()
    client = await attempt(server_factory, sshd, port=str(silent_listener), connect_timeout="2")
    elapsed = time.monotonic() - started
    assert client.error is not None
    assert client.error["code"] == "connect_timeout"
    assert "did not answer in time" in client.error["message"]
    assert elapsed < 15, f"error took {elapsed:.1f}s for a 2s connect timeout"


async def test_unknown_host_name(server_factory: ServerFactory, sshd: Sshd) -> None:
    client = await attempt(server_factory, sshd, host="no-such-host.invalid")
    assert client.error is not None
    assert client.error["code"] == "host_not_found"
    assert "no-such-host.invalid" in client.error["message"]


def test_a_host_whose_every_address_refuses_is_refused() -> None:
    # What asyncio raises when a name resolves to several addresses and each one refuses.
    from app.ssh.connector import _user_error
    from app.ssh.errors import ConnectionRefused, SSHError
    from app.ssh.plan import ConnectPlan

    plan = ConnectPlan(host="localhost", port=2, user="u", client_keys=[], verifier=None)  # type: ignore[arg-type]
    both = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 2, 0, 0), "
        "[Errno 111] Connect call failed ('127.0.0.1', 2)"
    )
    assert isinstance(_user_error(both, plan, None), ConnectionRefused)
    mixed = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 2, 0, 0), "
        "[Errno 113] Connect call failed ('127.0.0.1', 2)"
    )
    error = _user_error(mixed, plan, None)
    assert type(error) is SSHError
    assert "could not reach localhost:2" in str(error)


# A Secret holding one API token: asyncssh quotes such a line in "Invalid known hosts entry".
SECRET_LINE = "AKIA-SECRET-wJalrXUtnFEMI/K7MDENG/bPxRfiCY"


@pytest.mark.parametrize("flag", ["known_hosts", "key_file"])
async def test_key_material_that_does_not_parse_is_never_quoted(
    server_factory: ServerFactory,
    sshd: Sshd,
    tmp_path_factory: pytest.TempPathFactory,
    flag: str,
) -> None:
    """A Secret mounted where key material belongs: its content reaches no log, client or host."""
    secret = tmp_path_factory.mktemp("secret") / "mounted"
    secret.write_text(SECRET_LINE + "\n")
    server = server_factory(sshd, log_level="debug", **{flag: str(secret)})
    client = await open_client(server.base_url, server.token)
    await client.hello()
    await client.until_closed(timeout=30)
    assert client.error is not None
    assert client.error["code"] == "configuration_error"
    assert str(secret) in client.error["message"], "the message names the file"
    seen = {
        "ERROR frame": client.error["message"],
        "close reason": client.ws.close_reason or "",
        "server log": server.log(),
        "sshd log": sshd.log(),
    }
    for where, text in seen.items():
        for fragment in ("AKIA", "SECRET", "wJalr"):
            assert fragment not in text, f"{fragment!r} leaked into the {where}"
    if flag == "known_hosts":
        # The refusal reached sshd as asyncssh's own generic reason.
        assert "Host key is not trusted" in sshd.log()
