"""A shell through the whole server: browser protocol, asyncssh, OpenSSH sshd."""

from __future__ import annotations

import json
import re
import secrets
import stat
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd, SshdFactory
from tests.wsclient import connected

pytestmark = pytest.mark.anyio


async def test_shell_arithmetic_resize_and_exit_status(server: RunningServer, sshd: Sshd) -> None:
    client = await connected(server)
    status = client.statuses[-1]
    assert status["host_key_sha256"] == sshd.host_key_sha256
    assert status["session_id"]

    await client.send_input("echo $((6*7))\r")
    await client.until(lambda c: re.search(r"[\r\n]42\r\n", c.text) is not None)

    await client.resize(100, 30)
    await client.send_input("stty size\r")
    await client.until_text("30 100")

    await client.send_input("echo $TERM\r")
    await client.until_text("xterm-256color")

    await client.send_input("exit 3\r")
    await client.until(lambda c: c.exit is not None)
    assert client.exit == {"exit_status": 3, "reason": "the remote shell exited"}
    await client.until_closed()
    assert client.ws.close_code == 1000


async def test_initial_size_comes_from_hello(server: RunningServer) -> None:
    client = await connected(server, cols=132, rows=43)
    await client.send_input("stty size\r")
    await client.until_text("43 132")
    await client.ws.close()


async def test_ping_is_answered_with_the_same_bytes(server: RunningServer) -> None:
    from app.terminal.protocol import FrameType, encode

    client = await connected(server)
    await client.ws.send(encode(FrameType.PING, b"\x01probe"))
    await client.until(lambda c: c.pongs == [b"\x01probe"])
    await client.ws.close()


async def test_metrics_count_sessions_and_bytes(server: RunningServer) -> None:
    client = await connected(server)
    typed = "echo metrics-$((1+1))\r"
    before = time.time()
    await client.send_input(typed)
    await client.until_text("metrics-2")
    text = httpx.get(f"{server.origin}/metrics").text
    assert "ec2_terminal_active_sessions 1.0" in text
    assert "ec2_terminal_ssh_connect_seconds_count 1.0" in text
    samples = {
        (sample.name, sample.labels.get("direction")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["ec2_terminal_bytes_total", "in"] == len(typed)
    assert samples["ec2_terminal_bytes_total", "out"] >= client.offset
    assert samples["ec2_terminal_bytes_created", "out"] <= before
    assert before <= samples["ec2_terminal_last_activity_timestamp_seconds", None] <= time.time()
    await client.ws.close()


async def test_echo_latency_is_one_observation_per_answered_input(server: RunningServer) -> None:
    client = await connected(server)
    for word in ("first", "second", "third"):
        await client.send_input(f"echo {word}-$((2+3))\r")
        await client.until_text(f"{word}-5")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(httpx.get(f"{server.origin}/metrics").text)
        for sample in family.samples
        if sample.name.startswith("ec2_terminal_echo_latency_seconds")
    }
    # Output without input before it (the login banner, the prompt) is not an echo.
    assert samples["ec2_terminal_echo_latency_seconds_count"] == 3
    assert samples["ec2_terminal_echo_latency_seconds_sum"] > 0
    await client.ws.close()


async def test_a_keystroke_is_one_ssh_packet_without_an_ignore_before_it(
    server_factory: ServerFactory, sshd_factory: SshdFactory
) -> None:
    # sshd at DEBUG3 logs the type of every packet it receives; SSH_MSG_IGNORE is type 2.
    sshd = sshd_factory("Match all\n  LogLevel DEBUG3")
    server = server_factory(sshd)
    client = await connected(server)
    await client.send_input("echo cat-$((6*7)); cat > /dev/null\r")
    await client.until(lambda c: b"cat-42\r\n" in c.output)
    ignored = sshd.log().count("receive packet: type 2\n")
    for typed in range(1, 21):
        await client.send_input("k")
        await client.until(lambda c, typed=typed: c.output.endswith(b"k" * typed))  # type: ignore[misc]
    # Each echo left sshd after it logged the packets before the keystroke: the count is final.
    assert sshd.log().count("receive packet: type 2\n") == ignored
    await client.ws.close()


async def test_recordings_keep_output_and_resizes_never_input(
    server_factory: ServerFactory, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    recordings = tmp_path_factory.mktemp("recordings") / "casts"
    server = server_factory(sshd, recordings_dir=str(recordings))
    client = await connected(server, cols=80, rows=24)
    await client.send_input("echo recorded-$((40+2))\r")
    await client.until_text("recorded-42")
    await client.resize(100, 30)
    await client.send_input("stty size\r")
    await client.until_text("30 100")
    # Keystrokes the terminal does not echo must not reach the recording either: with echo
    # off, the marker is input only, and the shell says it arrived by printing its length.
    marker = f"unrecorded-{secrets.token_hex(8)}"
    await client.send_input("stty -echo; echo echo-off-$((1+1))\r")
    await client.until_text("echo-off-2")
    await client.send_input(
        'read -r -p "ready-$((2+3)): " line; stty echo; echo "got-${#line}-bytes"\r'
    )
    # Typed only once `read` waits: typed ahead, it would reach readline's raw mode instead.
    await client.until_text("ready-5: ")
    await client.send_input(marker + "\r")
    await client.until_text(f"got-{len(marker)}-bytes")
    assert marker not in client.text
    await client.send_input("exit\r")
    await client.until(lambda c: c.exit is not None)

    auth = {"Authorization": f"Bearer {server.token}"}
    assert httpx.get(f"{server.base_url}recordings/").status_code == 401
    listing = httpx.get(f"{server.base_url}recordings/", headers=auth).json()
    [entry] = listing["recordings"]
    # A session id resumes the session: whoever may list recordings must not learn one.
    assert client.session_id not in entry["name"]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[A-Za-z0-9_-]{16}\.cast", entry["name"]), entry
    # Terminal output may hold anything: only the server's own user may read it.
    assert stat.S_IMODE(recordings.stat().st_mode) == 0o700
    assert stat.S_IMODE((recordings / entry["name"]).stat().st_mode) == 0o600
    cast = httpx.get(f"{server.base_url}recordings/{entry['name']}", headers=auth).text
    header_line, *event_lines = cast.splitlines()
    header = json.loads(header_line)
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    events = [json.loads(line) for line in event_lines]
    times = [event[0] for event in events]
    assert times == sorted(times), "event times go backwards"
    # asciicast has "i" events for input: this server never writes one.
    assert {event[1] for event in events} == {"o", "r"}
    assert [event[2] for event in events if event[1] == "r"] == ["100x30"]
    output = "".join(event[2] for event in events if event[1] == "o")
    assert "recorded-42" in output
    assert f"got-{len(marker)}-bytes" in output
    assert marker not in cast
    assert httpx.get(f"{server.base_url}recordings/..%2Ftoken", headers=auth).status_code == 404
