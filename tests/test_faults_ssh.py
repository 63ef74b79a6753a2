"""Faults on the SSH leg, caused for real: sshd killed mid-session, the target's network cut
and restored inside a network namespace the test makes, a target that stops reading while
the user pastes. (A target that accepts TCP and never speaks: tests/test_ssh_errors.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.artifacts import record
from tests.bystander import Bystander
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd, start_sshd
from tests.netns import Netns, network_namespace
from tests.serverstats import eventually, problems_in, rss_mib, sessions_and_connections
from tests.support import memory_kib, port_open, stop
from tests.wsclient import TerminalClient, connected, open_client

pytestmark = pytest.mark.anyio


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def restart_peak(pid: int) -> None:
    """Make the process's peak resident memory (VmHWM) start again from now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def echo(client: TerminalClient, word: str, timeout: float = 15) -> None:
    """Type a command whose answer differs from what is typed, and wait for the answer."""
    await client.send_input(f"echo {word}-$((6*7))\r")
    await client.until_text(f"{word}-42", timeout=timeout)


async def test_sshd_killed_mid_session_ends_it_with_exit_and_the_reason(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd)
    client = await connected(server)
    await echo(client, "before-the-kill")
    session_processes = descendants(sshd.process.pid)
    assert session_processes, "sshd forked no process for the session"
    for pid in [sshd.process.pid, *session_processes]:
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    await client.until_closed(timeout=15)
    took = time.monotonic() - started
    assert client.error is None, client.error
    assert client.exit is not None
    assert client.exit["exit_status"] is None
    assert client.exit["reason"].startswith("connection to the host was lost"), client.exit
    assert client.ws.close_code == 1000
    assert took < 5, f"the EXIT took {took:.1f} s"
    record("ssh_sshd_killed", {"exit_after_s": round(took, 2)})
    await eventually(lambda: sessions_and_connections(server) == (0, 0), what="the session gone")
    # The server lives on and says plainly that the target is down.
    again = await open_client(server.base_url, server.token)
    await again.hello()
    await again.until_closed(timeout=15)
    assert again.error is not None
    assert again.error["code"] == "connection_refused"
    assert problems_in(server.log().splitlines()) == []


@pytest.fixture
def netns() -> Iterator[Netns]:
    with network_namespace() as ns:
        yield ns


@pytest.fixture
def sshd_in_netns(netns: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """sshd inside the test's namespace, reached through the veth pair."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"), host=netns.address, prefix=netns.prefix)
    yield server
    stop(server.process)


async def test_a_cut_network_to_the_target_is_detected_by_the_ssh_keepalive(
    server_factory: ServerFactory, sshd_in_netns: Sshd, netns: Netns
) -> None:
    interval, missed = 1, 3  # --keepalive-interval; the connector allows 3 missed answers
    server = server_factory(sshd_in_netns, keepalive_interval=interval)
    client = await connected(server)
    await echo(client, "before-the-cut")
    netns.cut()
    started = time.monotonic()
    await client.until_closed(timeout=30)
    took = time.monotonic() - started
    assert client.exit is not None, client.error
    assert client.exit["exit_status"] is None
    assert client.exit["reason"].startswith("connection to the host was lost"), client.exit
    assert took <= interval * (missed + 1) + 3, f"detected after {took:.1f} s"
    record("ssh_cut", {"keepalive_interval_s": interval, "detected_after_s": round(took, 1)})
    netns.restore()
    # Until the neighbour entry recovers, a new connection is told "No route to host".
    await eventually(
        lambda: port_open(sshd_in_netns.port, sshd_in_netns.host), what="the target reachable"
    )
    fresh = await connected(server)
    await echo(fresh, "after-the-restore")
    await fresh.ws.close()
    assert problems_in(server.log().splitlines()) == []


async def test_a_short_cut_loses_nothing_and_a_browser_drop_then_resumes(
    server_factory: ServerFactory, sshd_in_netns: Sshd, netns: Netns
) -> None:
    server = server_factory(sshd_in_netns, keepalive_interval=5)
    client = await connected(server)
    await echo(client, "before-the-cut")
    netns.cut()
    await client.send_input("echo typed-during-the-cut-$((6*7))\r")
    with pytest.raises(TimeoutError):  # nothing gets through while the link is down
        await client.until_text("typed-during-the-cut-42", timeout=2)
    netns.restore()
    await client.until_text("typed-during-the-cut-42", timeout=20)
    assert client.exit is None

    # Only the browser's leg drops now: the SSH leg holds and the session resumes.
    session_id, offset = client.session_id, client.offset
    client.ws.transport.abort()
    back = await open_client(server.base_url, server.token)
    back.offset = offset
    await back.hello(resume=(session_id, offset))
    await back.until(lambda c: any(s["state"] == "resumed" for s in c.statuses))
    await echo(back, "after-the-resume")
    await back.ws.close()
    assert problems_in(server.log().splitlines()) == []


PASTE = 4 * 1024 * 1024


async def paste(client: TerminalClient, data: bytes, chunk: int = 32 * 1024) -> None:
    for start in range(0, len(data), chunk):
        await client.send_input(data[start : start + chunk])


async def test_a_target_that_stops_reading_during_a_paste_loses_nothing(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    # A short keepalive: the server stops reading the socket while the paste waits for the
    # target, and that must not pass for a client that stopped answering pings.
    # A fast input rate: sshd's 2 MiB channel window and the 1 MiB input backlog fill at once.
    server = server_factory(sshd, ws_ping_interval=1, ws_ping_timeout=2, input_rate=16 * 2**20)
    with Bystander(server) as bystander:
        client = await connected(server)
        restart_peak(server.pid)
        baseline = rss_mib(server)
        # The target reads nothing for 6 s, then counts and hashes exactly what was pasted.
        await client.send_input(f"stty raw -echo; sleep 6; head -c {PASTE} | sha256sum\r")
        await client.until(lambda c: b"sleep 6" in c.output)
        data = bytes(0x21 + (n * 7919) % 94 for n in range(PASTE))  # printable, no newlines
        sending = asyncio.create_task(paste(client, data))
        expected = hashlib.sha256(data).hexdigest()
        await client.until_text(expected, timeout=90)
        await sending
        assert client.exit is None
        assert client.error is None
        peak = memory_kib(server.pid, "VmHWM") / 1024 - baseline
        await echo(client, "after-the-paste")
        bystander.check(at_least=10)
    record("ssh_paste_stall", {"paste_mib": PASTE >> 20, "peak_rss_growth_mib": round(peak, 1)})
    assert peak < 64, f"the server grew by {peak:.1f} MiB for a {PASTE >> 20} MiB paste"
    assert "keepalive" not in server.log()
    assert problems_in(server.log().splitlines()) == []


async def test_a_fast_paste_waits_for_the_target_instead_of_filling_the_ssh_buffer(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    # At 16 MiB/s of input tokens, a second's worth went past the 1 MiB backlog straight into
    # the SSH channel's buffer while the target read nothing; now it waits in the backlog.
    server = server_factory(sshd, input_rate=16 * 2**20)
    client = await connected(server)
    size = 6 * PASTE
    await client.send_input(f"stty raw -echo; sleep 6; head -c {size} | sha256sum\r")
    await client.until(lambda c: b"sleep 6" in c.output)
    restart_peak(server.pid)
    baseline = rss_mib(server)
    data = bytes(0x21 + (n * 7919) % 94 for n in range(size))
    sending = asyncio.create_task(paste(client, data))
    await client.until_text(hashlib.sha256(data).hexdigest(), timeout=90)
    await sending
    peak = memory_kib(server.pid, "VmHWM") / 1024 - baseline
    record("ssh_fast_paste_stall", {"paste_mib": size >> 20, "peak_rss_growth_mib": round(peak, 1)})
    assert peak < 10, f"the server grew by {peak:.1f} MiB for a {size >> 20} MiB paste"
    assert problems_in(server.log().splitlines()) == []
