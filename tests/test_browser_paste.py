"""A paste into a target that stops reading for longer than the page's keepalive, in Chromium."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, WebSocket

from tests.browser import TerminalPage, chromium
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import poll

pytestmark = pytest.mark.browser

#: Past the server's input backlog (1 MiB), sshd's channel window (2 MiB) and the PTY's buffers.
PASTE = 8 * 1024 * 1024
#: The server PINGs every 5 s while it cannot read the socket: 8 of them outlast the page's
#: keepalive (a PING every 15 s, unanswered for 20 s) whatever its phase when the paste began.
STALLED_PINGS = 8
#: Printable, no line breaks (xterm.js turns those into CR), the same bytes as in Python.
_PASTE_JS = """(size) => {
  const codes = new Uint8Array(size);
  for (let n = 0; n < size; n++) codes[n] = 0x21 + (n * 7919) % 94;
  window.__ec2terminal.term.paste(new TextDecoder().decode(codes));
}"""


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


def pasted_bytes() -> bytes:
    return bytes(0x21 + (n * 7919) % 94 for n in range(PASTE))


def test_a_paste_outlives_a_target_stopped_past_the_keepalive(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    # 1 MiB/s (4 x the default) drains the paste in seconds once the target reads; a rate much
    # higher lets one second's burst of it past the backlog, straight to the SSH channel.
    server = server_factory(sshd, input_rate=2**20)
    sockets: list[WebSocket] = []
    stalled_pings: list[bytes] = []

    def received_frame(payload: str | bytes) -> None:
        if isinstance(payload, bytes) and payload[:1] == b"\x03":  # a PING from the server
            stalled_pings.append(payload)

    def watch(ws: WebSocket) -> None:
        sockets.append(ws)
        ws.on("framereceived", received_frame)

    browser.on("page", lambda page: page.on("websocket", watch))
    terminal = TerminalPage.open(browser, server.link())
    terminal.wait_prompt()
    pid_file, received = tmp_path / "pid", tmp_path / "received"
    # The reader is the login shell's grandchild: were it the child, the shell would see it stop
    # (job control), take the terminal back and read the paste itself.
    script = tmp_path / "reader.sh"
    script.write_text(
        "stty raw -echo\n"
        f"sh -c 'echo $$ > {pid_file}; exec head -c {PASTE} > {received}'\n"
        "stty sane\n"
        "echo pasted-$((40+2))\n"
    )
    terminal.run(f"sh {script}")
    pid = int(poll(lambda: pid_file.read_text().strip(), what="the reader's pid"))
    os.kill(pid, signal.SIGSTOP)
    try:
        terminal.eval(_PASTE_JS, PASTE)

        def outlasted() -> bool:
            assert terminal.state() == "connected", "the page dropped its socket mid-paste"
            return len(stalled_pings) >= STALLED_PINGS

        poll(outlasted, timeout=STALLED_PINGS * 5 + 30, what="the server's PINGs while stalled")
        assert os.path.getsize(received) < PASTE, "the target read while it was stopped"
    finally:
        os.kill(pid, signal.SIGCONT)
    terminal.wait_line("pasted-42", timeout=60)
    assert received.read_bytes() == pasted_bytes(), "every byte, in order"
    assert len(sockets) == 1, "one socket throughout: nothing was cut or resumed"
    assert terminal.state() == "connected"
    assert "keepalive" not in server.log()
    assert not terminal.errors
