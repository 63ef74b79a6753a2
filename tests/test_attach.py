"""`ec2-terminal attach` in a real terminal (tmux), through the real server and OpenSSH sshd."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from app.client.attach import CLEAR_SCREEN, endpoint_for, exit_status, share_link
from app.client.keys import Escape, KeyFilter
from app.errors import ConfigurationError
from tests.fixtures_server import RunningServer
from tests.support import CLI, env_without_proxies, poll
from tests.tcpproxy import tcp_proxy
from tests.test_flow_control import CAT, ended, payload_file
from tests.tmux import tmux
from tests.wsclient import connected

# ---------------------------------------------------------------- pure parts


def test_the_escape_is_tilde_dot_at_the_start_of_a_line() -> None:
    keys = KeyFilter()
    assert keys.feed(b"ls ~/x\r") == (b"ls ~/x\r", Escape.NONE)
    assert keys.feed(b"~~home\r") == (b"~home\r", Escape.NONE)
    assert keys.feed(b"~x") == (b"~x", Escape.NONE)
    assert keys.feed(b"\r~") == (b"\r", Escape.NONE)  # held: it may start the escape
    assert keys.feed(b".after") == (b"", Escape.LEAVE)
    assert KeyFilter().feed(b"~.") == (b"", Escape.LEAVE), "the first line counts too"
    assert KeyFilter().feed(b"~sls\r") == (b"ls\r", Escape.SHARE), "keys after ~s are sent"
    assert KeyFilter().feed(b"~?") == (b"", Escape.HELP)
    assert KeyFilter.quits_viewer(b"q")
    assert KeyFilter.quits_viewer(b"\x03")
    assert not KeyFilter.quits_viewer(b"ls")


def test_the_websocket_is_beside_the_page_and_a_share_link_watches() -> None:
    assert endpoint_for("https://h/t/ns/x/", "T").url == "wss://h/t/ns/x/ws"
    assert endpoint_for("http://127.0.0.1:9", "T").url == "ws://127.0.0.1:9/ws"
    shared = endpoint_for("https://h/t/#view=abc", "T")
    assert (shared.url, shared.view_id) == ("wss://h/t/ws", "abc")
    assert endpoint_for("https://h/", "T", "xyz").view_id == "xyz"
    assert "T" not in repr(shared), "the token stays out of reprs and tracebacks"
    assert (
        share_link(endpoint_for("https://h/t/ns/x/", "T"), "a-b_c")
        == "https://h/t/ns/x/#view=a-b_c"
    )
    assert share_link(endpoint_for("http://h:8", "T"), "v") == "http://h:8/#view=v"
    for bad in ("ftp://h/", "h/t/", "https://h/#token=v1.x", "https://h/?token=v1.x"):
        with pytest.raises(ConfigurationError):
            endpoint_for(bad, "T")


def test_exit_statuses_pass_through_and_anything_else_is_255() -> None:
    assert [exit_status(s) for s in (0, 3, 255, 256, -1, None, True)] == [0, 3, 255] + [255] * 4


# ---------------------------------------------------------------- the real thing


def attach_argv(url: str, server: RunningServer, *extra: str) -> list[str]:
    return [CLI, "attach", url, "--token-file", str(server.log_path.parent / "token"), *extra]


def exit_code(status_file: Path, timeout: float = 20) -> int:
    text = poll(lambda: status_file.exists() and status_file.read_text().strip(), timeout, "exit")
    return int(text)


def test_attach_runs_commands_follows_resizes_survives_a_drop_and_returns_the_status(
    server: RunningServer, tmp_path: Path
) -> None:
    status = tmp_path / "status"
    with tcp_proxy(server.port) as proxy, tmux(tmp_path, 90, 28) as term:
        term.start(attach_argv(f"http://127.0.0.1:{proxy.port}/", server), status)
        term.type("echo ready-$((40+2))")
        term.wait_line("ready-42")
        term.type("stty size")
        term.wait_line("28 90")
        term.type("~s", enter=False)  # the escape, at the start of a line: not sent
        term.wait_text(f"read-only Share link: http://127.0.0.1:{proxy.port}/#view=")

        term.resize(110, 33)
        term.type("clear; stty size")
        term.wait_line("33 110")

        # Output produced while the connection is down arrives once it is back, exactly once.
        # (Keys in flight when a connection dies are lost, as on any network: the command is
        # under way before the drop.)
        term.type("echo started-$((0+1)); sleep 3; echo during-drop-$((3+3))")
        term.wait_line("started-1")
        assert proxy.drop() >= 1
        term.wait_text("connection lost")
        term.wait_text("reconnected")
        term.wait_line("during-drop-6", timeout=30)
        assert term.lines().count("during-drop-6") == 1
        term.type("echo after-$((1+1))")
        term.wait_line("after-2")

        term.type("exit 7")
        assert exit_code(status) == 7, term.screen()
    assert server.token not in server.log()


def test_attach_read_only_watches_a_shared_session_and_sends_no_keys(
    server: RunningServer, tmp_path: Path, anyio_backend: str
) -> None:
    import anyio

    async def scenario() -> None:
        owner = await connected(server)
        await owner.send_input("echo before-$((1+1))\r")
        await owner.until_text("before-2")
        status = tmp_path / "status"
        with tmux(tmp_path, 80, 24) as term:
            term.start(
                attach_argv(f"{server.base_url}#view={owner.view_id}", server, "--read-only"),
                status,
            )
            term.wait_line("before-2")  # joined late: the screen so far
            await owner.send_input("echo live-$((2+2))\r")
            term.wait_line("live-4")
            term.type("echo from-viewer", enter=True)
            term.wait_text("read-only")
            await owner.send_input("echo owner-$((3+3))\r")
            await owner.until_text("owner-6")
            assert "from-viewer" not in owner.text
            term.type("q", enter=False)
            assert exit_code(status) == 0
        await owner.ws.close()

    anyio.run(scenario)


def test_a_viewer_that_falls_behind_clears_its_screen_and_joins_again(
    server: RunningServer, tmp_path: Path, anyio_backend: str
) -> None:
    import anyio

    async def scenario() -> None:
        owner = await connected(server)
        viewer = await asyncio.create_subprocess_exec(
            CLI,
            "attach",
            f"{server.base_url}#view={owner.view_id}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # not read for now: the viewer stalls on it
            stderr=asyncio.subprocess.PIPE,
            env=env_without_proxies() | {"EC2_TERMINAL_TOKEN": server.token},
        )
        try:
            assert viewer.stdout is not None
            assert viewer.stderr is not None
            notices = bytearray()

            async def read_notices(stream: asyncio.StreamReader) -> None:
                while line := await stream.readline():
                    notices.extend(line)

            async with asyncio.timeout(20):
                while b"watching read-only" not in notices:
                    notices.extend(await viewer.stderr.readline())
            reading = asyncio.create_task(read_notices(viewer.stderr))
            # Far more than the viewer's window and the replay buffer (1 MiB each) go by.
            path, _ = payload_file(tmp_path, 8 * 1024 * 1024)
            await owner.send_input(CAT.format(path=path))
            await owner.until(lambda c: ended(c.output), timeout=120)
            await owner.send_input("echo after-flood-$((4+4))\r")
            await owner.until(lambda c: b"after-flood-8" in c.output[-4096:])

            screen = bytearray()
            async with asyncio.timeout(60):
                while b"after-flood-8" not in screen[-(1 << 20) :]:
                    screen.extend(await viewer.stdout.read(1 << 16))
            assert b"fell behind the session: joining again" in notices
            assert CLEAR_SCREEN in screen, "the screen is drawn afresh before the new replay"
            assert b"after-flood-8" in screen[screen.rindex(CLEAR_SCREEN) :]

            await owner.send_input("exit 5\r")
            async with asyncio.timeout(30):
                while await viewer.stdout.read(1 << 16):
                    pass
                assert await viewer.wait() == 5, "a viewer exits with the session's status"
            await reading
        finally:
            if viewer.returncode is None:
                viewer.kill()
                await viewer.wait()

    anyio.run(scenario)


def run_attach(
    server: RunningServer, url: str, stdin: bytes, *flags: str, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLI, "attach", url, *flags],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=env_without_proxies() | env,
        check=False,
    )


def test_a_script_pipes_commands_in_and_gets_output_and_status(server: RunningServer) -> None:
    done = run_attach(
        server,
        server.base_url,
        b"echo scripted-$((2+3))\nexit 4\n",
        EC2_TERMINAL_TOKEN=server.token,
    )
    assert b"scripted-5" in done.stdout
    assert done.returncode == 4, done.stderr


def test_bad_credentials_and_addresses_are_refused_clearly(server: RunningServer) -> None:
    wrong = run_attach(server, server.base_url, b"", EC2_TERMINAL_TOKEN="not-the-token")
    assert wrong.returncode == 255
    assert b"refused the access token" in wrong.stderr
    missing = run_attach(server, server.base_url, b"", EC2_TERMINAL_TOKEN="")
    assert missing.returncode == 2
    assert b"no access token" in missing.stderr
    link = run_attach(
        server, f"{server.base_url}#token={server.link_token()}", b"", EC2_TERMINAL_TOKEN="x"
    )
    assert link.returncode == 2
    assert b"link token" in link.stderr
    gone = run_attach(
        server, f"{server.base_url}#view=no-such-view", b"", EC2_TERMINAL_TOKEN=server.token
    )
    assert gone.returncode == 255
    assert b"session_not_found" in gone.stderr
    no_view = run_attach(
        server, server.base_url, b"", "--read-only", EC2_TERMINAL_TOKEN=server.token
    )
    assert no_view.returncode == 2
    assert b"Share link" in no_view.stderr
