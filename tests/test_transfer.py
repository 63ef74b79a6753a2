"""File transfer over SFTP on the session's own SSH connection, against the real sshd."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.wsclient import TerminalClient, connected, viewing

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


def files_url(server: RunningServer) -> str:
    return f"{server.base_url}files"


def headers(server: RunningServer, client: TerminalClient, **extra: str) -> dict[str, str]:
    """Bearer auth (as the owner's socket had) and the session's id."""
    return {
        "Authorization": f"Bearer {server.token}",
        "EC2-Terminal-Session": client.session_id,
        **extra,
    }


def put(
    server: RunningServer, client: TerminalClient, path: Path | str, body: bytes, **params: str
) -> httpx.Response:
    return httpx.put(
        files_url(server),
        params={"path": str(path), **params},
        content=body,
        headers=headers(server, client),
        timeout=60,
    )


def get(server: RunningServer, client: TerminalClient, path: Path | str) -> httpx.Response:
    return httpx.get(
        files_url(server), params={"path": str(path)}, headers=headers(server, client), timeout=60
    )


def entries(directory: Path) -> list[str]:
    """The names in `directory`."""
    return sorted(p.name for p in directory.iterdir())


def leftovers(directory: Path) -> list[str]:
    """Temporary upload files left in `directory`."""
    return [name for name in entries(directory) if name.endswith(".part")]


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "files"
    directory.mkdir()
    yield directory
    for path in directory.rglob("*"):  # let pytest clean up what a test locked
        path.chmod(0o700 if path.is_dir() else 0o600)


async def test_upload_then_download_keeps_every_byte(server: RunningServer, workdir: Path) -> None:
    owner = await connected(server)
    data = os.urandom(5 * MIB + 123)
    target = workdir / "payload.bin"
    answer = put(server, owner, target, data)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"path": str(target)}
    assert answer.headers["cache-control"] == "no-store"
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert leftovers(workdir) == []

    down = get(server, owner, target)
    assert down.status_code == 200
    assert down.content == data
    assert down.headers["content-length"] == str(len(data))
    assert down.headers["content-disposition"].startswith('attachment; filename="payload.bin"')
    assert down.headers["cache-control"] == "no-store"

    # A relative path is in the SSH user's home; the answer says where it landed.
    name = f"ec2-terminal-test-{os.getpid()}.txt"
    home = Path.home()
    try:
        answer = put(server, owner, name, b"home\n")
        assert answer.json() == {"path": str(home / name)}
    finally:
        (home / name).unlink(missing_ok=True)

    metrics = httpx.get(f"{server.origin}/metrics").text
    assert re.search(r'ec2_terminal_transfer_bytes_total\{direction="upload"\} 5\.24', metrics)
    await owner.send_input("echo alive-$((2+2))\r")
    await owner.until_text("alive-4")
    await owner.ws.close()


async def test_an_existing_file_is_replaced_only_when_asked(
    server: RunningServer, workdir: Path
) -> None:
    owner = await connected(server)
    target = workdir / "notes.txt"
    target.write_bytes(b"old\n")
    target.chmod(0o640)
    refused = put(server, owner, target, b"new\n")
    assert refused.status_code == 409
    assert refused.json()["code"] == "file_exists"
    assert target.read_bytes() == b"old\n"
    replaced = put(server, owner, target, b"new\n", overwrite="1")
    assert replaced.status_code == 201
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_mode & 0o777 == 0o640, "the replaced file keeps its mode"
    into_dir = put(server, owner, f"{workdir}/", b"x")
    assert (into_dir.status_code, into_dir.json()["code"]) == (400, "bad_path")
    (workdir / "sub").mkdir()
    directory = put(server, owner, workdir / "sub", b"x", overwrite="1")
    assert (directory.status_code, directory.json()["code"]) == (409, "not_a_file")
    assert leftovers(workdir) == []
    await owner.ws.close()


async def test_missing_paths_and_refused_permissions_have_their_errors(
    server: RunningServer, workdir: Path
) -> None:
    owner = await connected(server)
    missing = get(server, owner, workdir / "no-such-file")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": f"{workdir}/no-such-file: no such file or directory on the target",
        "code": "file_not_found",
    }
    nowhere = put(server, owner, workdir / "no-such-dir" / "f", b"x")
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, "file_not_found")
    directory = get(server, owner, workdir)
    assert (directory.status_code, directory.json()["code"]) == (409, "not_a_file")

    secret = workdir / "secret"
    secret.write_bytes(b"not for you\n")
    secret.chmod(0o000)
    unreadable = get(server, owner, secret)
    assert unreadable.status_code == 403
    assert unreadable.json()["code"] == "permission_denied"
    locked = workdir / "locked"
    locked.mkdir(mode=0o555)
    unwritable = put(server, owner, locked / "f", b"x")
    assert unwritable.status_code == 403
    assert unwritable.json()["code"] == "permission_denied"
    assert entries(locked) == []
    await owner.ws.close()


async def test_limits_refuse_large_files_and_write_nothing(
    server_factory: ServerFactory, sshd: Sshd, workdir: Path
) -> None:
    server = server_factory(sshd, max_upload_bytes=1000, max_download_bytes=1000)
    owner = await connected(server)
    declared = put(server, owner, workdir / "big", b"x" * 1001)
    assert (declared.status_code, declared.json()["code"]) == (413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b"y" * 400

    streamed = httpx.put(
        files_url(server),
        params={"path": str(workdir / "big")},
        content=chunks(),
        headers=headers(server, owner),
        timeout=60,
    )
    assert (streamed.status_code, streamed.json()["code"]) == (413, "too_large")
    assert entries(workdir) == [], "a refused upload leaves nothing behind"
    (workdir / "large").write_bytes(b"z" * 1001)
    too_big = get(server, owner, workdir / "large")
    assert (too_big.status_code, too_big.json()["code"]) == (413, "too_large")
    assert put(server, owner, workdir / "small", b"ok").status_code == 201
    await owner.ws.close()

    off = server_factory(sshd, max_upload_bytes=0)
    alone = await connected(off)
    refused = put(off, alone, workdir / "f", b"x")
    assert (refused.status_code, refused.json()["code"]) == (403, "transfer_disabled")
    await alone.ws.close()


async def test_only_the_owners_login_may_transfer(server: RunningServer, workdir: Path) -> None:
    owner = await connected(server)
    (workdir / "f").write_bytes(b"owner's\n")
    viewer = await viewing(server, owner.view_id)
    url, params = files_url(server), {"path": str(workdir / "f")}
    session = {"EC2-Terminal-Session": owner.session_id}

    answers = {
        "no credentials": httpx.get(url, params=params, headers=session),
        "another login": httpx.get(
            url, params=params, headers={**session, "Cookie": server.cookie()}
        ),
        "no session": httpx.get(
            url, params=params, headers={"Authorization": headers(server, owner)["Authorization"]}
        ),
        "a view id": httpx.get(
            url,
            params=params,
            headers={**headers(server, owner), "EC2-Terminal-Session": owner.view_id},
        ),
        "a foreign origin": httpx.get(
            url, params=params, headers={**headers(server, owner), "Origin": "https://evil.test"}
        ),
    }
    codes = {why: (r.status_code, r.json()["code"]) for why, r in answers.items()}
    assert codes == {
        "no credentials": (401, "authentication_required"),
        "another login": (403, "not_owner"),
        "no session": (400, "session_required"),
        "a view id": (404, "session_not_found"),
        "a foreign origin": (403, "foreign_origin"),
    }
    assert get(server, owner, workdir / "f").status_code == 200
    await viewer.ws.close()
    await owner.ws.close()


async def test_transferred_files_never_reach_a_recording(
    server_factory: ServerFactory, sshd: Sshd, workdir: Path, tmp_path: Path
) -> None:
    recordings = tmp_path / "casts"
    server = server_factory(sshd, recordings_dir=str(recordings))
    owner = await connected(server)
    marker = f"file-content-{os.urandom(8).hex()}"
    assert put(server, owner, workdir / "f", marker.encode()).status_code == 201
    assert marker.encode() in get(server, owner, workdir / "f").content
    await owner.send_input("exit\r")
    await owner.until(lambda c: c.exit is not None)
    (cast,) = recordings.iterdir()
    assert marker not in cast.read_text()
