"""Recordings: the asciicast writer and its size limit, alone and behind the real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.errors import ConfigurationError
from app.settings import MIN_RECORDING_BYTES, Limits, Settings
from app.terminal.recording import SIZE_LIMIT_REACHED, Recorder
from app.terminal.types import Size
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd
from tests.wsclient import connected


def read_cast(path: Path) -> tuple[dict[str, object], list[list[object]]]:
    header, *events = path.read_text().splitlines()
    return json.loads(header), [json.loads(line) for line in events]


def test_a_recording_stops_at_its_size_limit_with_a_marker(tmp_path: Path) -> None:
    path = tmp_path / "a.cast"
    recorder = Recorder(path, Size(80, 24), max_bytes=MIN_RECORDING_BYTES)
    line = b"0123456789" * 10 + b"\r\n"
    for _ in range(100):
        recorder.output(line)
    assert recorder.size_limit_reached
    size = path.stat().st_size
    assert MIN_RECORDING_BYTES - 512 < size <= MIN_RECORDING_BYTES
    # Nothing more is written once the limit is reached, not even at close.
    recorder.output(b"after the limit")
    recorder.resize(Size(100, 30))
    recorder.close()
    assert path.stat().st_size == size

    header, events = read_cast(path)
    assert header["version"] == 2
    *recorded, marker, last_output = events
    assert {e[1] for e in recorded} == {"o"}
    assert "".join(str(e[2]) for e in recorded) == line.decode() * len(recorded)
    assert marker[1:] == ["m", SIZE_LIMIT_REACHED]
    assert last_output[1:] == ["o", f"\r\n[{SIZE_LIMIT_REACHED}]\r\n"]
    # The marker comes before the end: players do not show one at the very end.
    assert float(str(recorded[-1][0])) <= float(str(marker[0])) < float(str(last_output[0]))


def test_a_recording_below_its_limit_has_no_marker(tmp_path: Path) -> None:
    path = tmp_path / "b.cast"
    recorder = Recorder(path, Size(80, 24), max_bytes=MIN_RECORDING_BYTES)
    recorder.output("héllo ".encode()[:2])  # a UTF-8 sequence split across reads
    recorder.output("héllo ".encode()[2:])
    recorder.close()
    assert not recorder.size_limit_reached
    _, events = read_cast(path)
    assert [e[1:] for e in events] == [["o", "h"], ["o", "éllo "]]


def test_the_limit_has_a_floor() -> None:
    with pytest.raises(ConfigurationError, match="--max-recording-bytes must be at least 4096"):
        Settings(limits=Limits(max_recording_bytes=4095))


@pytest.mark.anyio
async def test_the_shell_keeps_working_after_the_recording_limit(
    server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    recordings = tmp_path / "casts"
    server = server_factory(
        sshd, recordings_dir=str(recordings), max_recording_bytes=MIN_RECORDING_BYTES
    )
    client = await connected(server)
    await client.send_input("seq 1 3000; echo seq-$((1+2))-done\r")
    await client.until_text("seq-3-done")
    await client.send_input("echo after-$((6*7))\r")
    await client.until_text("after-42")
    await client.send_input("exit\r")
    await client.until(lambda c: c.exit is not None)

    auth = {"Authorization": f"Bearer {server.token}"}
    [entry] = httpx.get(f"{server.base_url}recordings/", headers=auth).json()["recordings"]
    assert entry["bytes"] <= MIN_RECORDING_BYTES
    _, events = read_cast(recordings / entry["name"])
    assert events[-2][1:] == ["m", SIZE_LIMIT_REACHED]
    assert events[-1][1:] == ["o", f"\r\n[{SIZE_LIMIT_REACHED}]\r\n"]
    output = "".join(str(e[2]) for e in events if e[1] == "o")
    assert "after-42" not in output
    assert "reached its size limit" in server.log()
