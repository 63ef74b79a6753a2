"""Shared viewing: read-only viewers of a session, through the real server and OpenSSH sshd."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.test_flow_control import CAT, between_markers, ended, payload_file
from tests.wsclient import TerminalClient, connected, open_client, viewing

pytestmark = pytest.mark.anyio


def metric(server: RunningServer, name: str) -> float:
    """A sample's value from the server's /metrics."""
    text = httpx.get(f"{server.origin}/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} is not in /metrics"
    return float(match.group(1))


def last_update(client: TerminalClient) -> dict[str, int]:
    return next(s for s in reversed(client.statuses) if s["state"] in ("update", "connected"))


async def test_a_viewer_sees_the_owners_output_and_cannot_type_or_resize(
    server: RunningServer,
) -> None:
    owner = await connected(server, cols=90, rows=30)
    status = owner.statuses[-1]
    assert status["viewers"] == 0
    assert (status["cols"], status["rows"]) == (90, 30)
    assert status["view_id"] != status["session_id"]

    viewer = await viewing(server, owner.view_id)
    joined = viewer.statuses[-1]
    assert joined["state"] == "viewing"
    assert "session_id" not in joined, "a viewer must not learn the id that takes a session over"
    assert (joined["viewers"], joined["cols"], joined["rows"]) == (1, 90, 30)
    await owner.until(lambda c: last_update(c)["viewers"] == 1)
    assert metric(server, "ec2_terminal_viewers") == 1

    await owner.send_input("echo shared-$((6*7))\r")
    await viewer.until_text("shared-42")

    await viewer.send_input("echo typed-by-viewer-$((1+1))\r")
    await viewer.until(lambda c: c.error is not None)
    assert viewer.error_code == "read_only"
    viewer.error = None
    await viewer.resize(40, 10)
    await viewer.until(lambda c: c.error is not None)
    assert viewer.error_code == "read_only"

    # The viewer is still connected and following; neither its keys nor its size arrived.
    await owner.send_input("stty size; echo after-$((2+2))\r")
    await viewer.until_text("after-4")
    await owner.until_text("after-4")
    assert "30 90" in owner.text
    assert "typed-by-viewer-2" not in owner.text
    assert viewer.ws.close_code is None

    await viewer.ws.close()
    await owner.until(lambda c: last_update(c)["viewers"] == 0)
    assert metric(server, "ec2_terminal_viewers") == 0
    await owner.ws.close()


async def test_a_late_viewer_sees_what_is_already_on_the_screen(server: RunningServer) -> None:
    owner = await connected(server)
    await owner.send_input("printf 'before-%s\\n' $((40+2))\r")
    await owner.until_text("before-42")
    viewer = await viewing(server, owner.view_id)
    assert viewer.statuses[-1]["offset"] == 0, "the whole session is kept: replay from byte 0"
    await viewer.until_text("before-42")
    await owner.ws.close()
    await viewer.ws.close()


async def test_the_owners_resize_reaches_viewers_and_so_does_the_exit(
    server: RunningServer,
) -> None:
    owner = await connected(server)
    viewer = await viewing(server, owner.view_id)
    await owner.resize(120, 40)
    await viewer.until(
        lambda c: (c.statuses[-1].get("cols"), c.statuses[-1].get("rows")) == (120, 40)
    )
    assert viewer.statuses[-1]["state"] == "update"
    await owner.send_input("exit 5\r")
    await viewer.until(lambda c: c.exit is not None)
    assert viewer.exit == {"exit_status": 5, "reason": "the remote shell exited"}
    await viewer.until_closed()
    assert viewer.ws.close_code == 1000


async def test_view_ids_and_session_ids_do_not_stand_in_for_each_other(
    server: RunningServer,
) -> None:
    owner = await connected(server)
    taker = await open_client(server.base_url, server.token)
    await taker.hello(resume=(owner.view_id, 0))
    await taker.until_closed()
    assert taker.error_code == "session_not_found"
    watcher = await open_client(server.base_url, server.token)
    await watcher.hello(view=owner.session_id)
    await watcher.until_closed()
    assert watcher.error_code == "session_not_found"
    await owner.send_input("echo still-mine-$((3+3))\r")
    await owner.until_text("still-mine-6")
    await owner.ws.close()


async def test_a_viewer_that_lost_its_socket_continues_from_its_offset(
    server: RunningServer,
) -> None:
    owner = await connected(server)
    first = await viewing(server, owner.view_id)
    await owner.send_input("echo one-$((0+1))\r")
    await first.until_text("one-1")
    first.ws.transport.abort()
    await owner.send_input("echo two-$((1+1))\r")
    await owner.until_text("two-2")

    again = await open_client(server.base_url, server.token)
    again.offset = first.offset
    await again.hello(view=owner.view_id, view_offset=first.offset)
    await again.until_text("two-2")
    assert again.statuses[0]["offset"] == first.offset
    assert "one-1" not in again.text, "output before the offset was sent again"
    await owner.ws.close()
    await again.ws.close()


async def test_a_stalled_viewer_does_not_hold_the_owner_back(
    server: RunningServer, tmp_path: Path
) -> None:
    path, digest = payload_file(tmp_path, 8 * 1024 * 1024)
    owner = await connected(server)
    viewer = await viewing(server, owner.view_id, auto_ack=False)
    await owner.send_input(CAT.format(path=path))
    # The viewer reads nothing and ACKs nothing, yet the owner gets all 8 MiB.
    await owner.until(lambda c: ended(c.output), timeout=120)
    assert hashlib.sha256(between_markers(bytes(owner.output))).hexdigest() == digest
    # The viewer got one window, then nothing; once it ACKs, what it needs next is gone.
    await viewer.until(lambda c: c.offset >= 1024 * 1024, timeout=30)
    await viewer.ack()
    await viewer.until_closed(timeout=30)
    assert viewer.error_code == "viewer_too_slow"
    assert viewer.ws.close_code == 1013
    await owner.ws.close()


async def test_viewers_are_limited_and_sharing_can_be_off(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, max_viewers=1)
    owner = await connected(server)
    first = await viewing(server, owner.view_id)
    second = await open_client(server.base_url, server.token)
    await second.hello(view=owner.view_id)
    await second.until_closed()
    assert second.error_code == "too_many_viewers"
    assert second.ws.close_code == 1013
    await first.ws.close()
    await owner.ws.close()

    private = server_factory(sshd, max_viewers=0)
    alone = await connected(private)
    assert "view_id" not in alone.statuses[-1]
    await alone.ws.close()
