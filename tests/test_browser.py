"""The terminal page in headless Chromium, through the real server and OpenSSH sshd."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from tests.browser import TerminalPage, choose_webgl, chromium
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd

pytestmark = pytest.mark.browser


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


def open_terminal(browser: BrowserContext, server: RunningServer) -> TerminalPage:
    terminal = TerminalPage.open(browser, server.link())
    terminal.wait_prompt()
    return terminal


def test_link_command_output_and_fit(
    browser: BrowserContext, server: RunningServer, sshd: Sshd
) -> None:
    link = server.link()
    terminal = TerminalPage.open(browser, link)
    terminal.wait_prompt()
    assert terminal.statuses == [200]
    assert terminal.page.url == server.base_url, "the token must leave the address bar"
    token = link.partition("#token=")[2]
    assert token not in terminal.page.content()
    assert server.log_in(token).status_code == 401, "the page used the link up"

    terminal.run("echo $((6*7))")
    terminal.wait_line("42")

    status_bar = terminal.page.locator("#status-bar")
    assert "connected" in status_bar.inner_text()
    assert sshd.host_key_sha256 in status_bar.inner_text()
    terminal.page.wait_for_function(
        "() => /\\d+ ms/.test(document.getElementById('rtt').textContent)"
    )

    cols, rows = terminal.size()
    terminal.run("stty size")
    terminal.wait_line(f"{rows} {cols}")

    terminal.page.set_viewport_size({"width": 1200, "height": 700})
    terminal.page.wait_for_function(
        "([c, r]) => window.__ec2terminal.term.cols > c && window.__ec2terminal.term.rows > r",
        arg=[cols, rows],
    )
    new_cols, new_rows = terminal.size()
    terminal.run("stty size")
    terminal.wait_line(f"{new_rows} {new_cols}")

    terminal.screenshot("browser-terminal.png")
    assert not terminal.errors
    assert terminal.csp_violations() == []
    # The link's entry in the history was replaced: going back skips it.
    terminal.page.go_back()
    assert "token" not in terminal.page.url


def test_dropped_socket_resumes_without_lost_output(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server)
    # Collect every byte the page renders, and drop the socket once in the middle of the output.
    terminal.eval(
        """(dropAfter) => {
          const t = window.__ec2terminal;
          const decoder = new TextDecoder();
          const dropAt = t.connection.stream.received + dropAfter;
          window.__seen = [];
          window.__dropped = null;
          t.taps.add((data) => {
            window.__seen.push(decoder.decode(data, { stream: true }));
            if (window.__dropped === null && t.connection.stream.received >= dropAt) {
              t.dropSocket();
              window.__dropped = t.connection.uiState;
            }
          });
        }""",
        300_000,
    )
    terminal.run("seq 1 200000; echo seq-$((1+1))-done")
    terminal.wait_line("seq-2-done", timeout=60)
    assert terminal.eval("window.__dropped") == "reconnecting"
    states = terminal.eval("window.__ec2terminal.states")
    assert "connected: resumed" in states, states

    seen: str = terminal.eval("window.__seen.join('')")
    expected = "".join(f"{i}\r\n" for i in range(1, 200001))
    first = re.search(r"(?<![0-9])1\r\n2\r\n3\r\n", seen)
    assert first, seen[:500]
    start = first.start()
    got = seen[start : start + len(expected)]
    if got != expected:
        at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
        pytest.fail(f"output differs at byte {at}: {got[at - 20 : at + 20]!r}")
    assert seen[start + len(expected) :].startswith("seq-2-done")
    terminal.run("echo $((6*7))")
    terminal.wait_line("42")
    assert not terminal.errors


def session_id(terminal: TerminalPage) -> str:
    return str(terminal.eval("window.__ec2terminal.connection.sessionId"))


def reload_and_check_the_shell(terminal: TerminalPage, session: str, mark: str) -> None:
    """Reload the page: it must come back to `session`, whose shell still has `$MARK`."""
    terminal.page.reload()
    terminal.wait_state("connected")
    assert session_id(terminal) == session
    terminal.run("echo $MARK")
    terminal.wait_line(mark)


def test_reloading_the_page_resumes_its_session_with_the_output_so_far(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server)
    first = session_id(terminal)
    terminal.run("MARK=kept-$((20+3)); echo before-$((1+1))-reload")
    terminal.wait_line("before-2-reload")

    reload_and_check_the_shell(terminal, first, "kept-23")
    assert "connected: resumed" in terminal.eval("window.__ec2terminal.states")
    terminal.wait_line("before-2-reload")  # replayed into the fresh page

    # Another tab on the same link gets a session of its own and leaves this one be.
    other = TerminalPage.open(browser, server.base_url)
    assert session_id(other) != first
    terminal.run("echo still-$((3*3))")
    terminal.wait_line("still-9")

    # A session that has ended is not resumed: a reload starts a new one.
    terminal.run("exit")
    terminal.wait_state("closed")
    terminal.page.reload()
    terminal.wait_state("connected")
    assert session_id(terminal) not in (first, session_id(other))
    terminal.wait_prompt()
    assert not terminal.errors
    assert not other.errors


def test_a_reload_after_much_output_resumes_without_the_replay(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd
) -> None:
    # Keeping only 64 KiB, the server has dropped what a reload would replay after 600 KB.
    server = server_factory(sshd, replay_buffer=65536, flow_window=65536)
    terminal = open_terminal(browser, server)
    first = session_id(terminal)
    terminal.run("MARK=kept-$((30+4)); seq 1 100000; echo seq-$((2+2))-done")
    terminal.wait_line("seq-4-done", timeout=60)
    reload_and_check_the_shell(terminal, first, "kept-34")
    assert not terminal.errors


def test_exit_reason_shows_and_new_session_starts(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server)
    first_session = session_id(terminal)
    terminal.run("exit 3")
    terminal.wait_state("closed")
    message = terminal.page.locator("#message").inner_text()
    assert re.search(r"status 3\b", message), message
    assert "exited" in message
    assert terminal.page.locator("#state").inner_text() == "closed"
    button = terminal.page.locator("#new-session")
    assert button.is_visible()

    button.click()
    terminal.wait_state("connected")
    assert not button.is_visible()
    assert session_id(terminal) != first_session
    terminal.wait_prompt()
    terminal.run("echo $((6*7))")
    terminal.wait_line("42")
    assert not terminal.errors


def test_dom_renderer_after_webgl_context_loss(
    browser: BrowserContext, server: RunningServer
) -> None:
    choose_webgl(browser)
    terminal = open_terminal(browser, server)
    if terminal.eval("window.__ec2terminal.renderer") == "webgl":
        terminal.eval(
            """() => {
              for (const canvas of document.querySelectorAll('#terminal canvas')) {
                const gl = canvas.getContext('webgl2');
                if (gl) gl.getExtension('WEBGL_lose_context').loseContext();
              }
            }"""
        )
        # xterm.js waits a few seconds for the context to come back before giving up on it.
        terminal.page.wait_for_function(
            "() => window.__ec2terminal.renderer === 'dom'", timeout=15_000
        )
    assert terminal.page.locator("#terminal canvas").count() == 0
    terminal.run("printf 'plain \\033[31mred\\033[0m\\n'")
    terminal.wait_line("plain red")
    red = terminal.page.locator(".xterm-rows span.xterm-fg-1", has_text="red").last
    red.wait_for()
    color = "e => getComputedStyle(e).color"
    themed = terminal.eval("() => window.__ec2terminal.term.options.theme.red")
    rgb = "rgb({}, {}, {})".format(*bytes.fromhex(themed.removeprefix("#")))
    assert red.evaluate(color) == rgb, "the theme's red"
    terminal.screenshot("browser-dom-renderer.png")
    # The theme's colors live in stand-ins for xterm.js's <style> elements: without the sheets
    # the page mirrors them into, the text would lose its color.
    terminal.eval("() => { document.adoptedStyleSheets = []; }")
    assert red.evaluate(color) != rgb
    assert not terminal.errors


def test_copy_and_paste_shortcuts(browser: BrowserContext, server: RunningServer) -> None:
    browser.grant_permissions(["clipboard-read", "clipboard-write"])
    terminal = open_terminal(browser, server)
    terminal.run("echo copy-$((1+2))-me")
    terminal.wait_line("copy-3-me")
    terminal.eval("window.__ec2terminal.term.selectAll()")
    terminal.page.keyboard.press("Control+Shift+C")
    terminal.page.wait_for_function(
        "() => navigator.clipboard.readText().then((t) => t.includes('copy-3-me'))"
    )

    terminal.eval("() => navigator.clipboard.writeText('echo pasted-$((2+3))')")
    terminal.page.keyboard.press("Control+Shift+V")
    terminal.page.keyboard.press("Enter")
    terminal.wait_line("pasted-5")
    assert not terminal.errors


def test_web_links_open_on_click(browser: BrowserContext, server: RunningServer) -> None:
    terminal = open_terminal(browser, server)
    terminal.run("echo https://example.invalid/$((6*7))")
    terminal.wait_line("https://example.invalid/42")
    # Stand in for window.open: the test only checks the link was recognized and activated.
    terminal.eval(
        "() => { window.__opened = 0; window.open = () => { window.__opened++; return null; }; }"
    )
    x, y = terminal.eval(
        """() => {
          const term = window.__ec2terminal.term;
          const buf = term.buffer.active;
          const rect = document.querySelector('#terminal .xterm-screen').getBoundingClientRect();
          const cellW = rect.width / term.cols, cellH = rect.height / term.rows;
          for (let i = buf.length - 1; i >= 0; i--) {
            const text = buf.getLine(i).translateToString(true);
            if (text.trim() === 'https://example.invalid/42') {
              const col = text.indexOf('https') + 5.5, row = i - buf.viewportY + 0.5;
              return [rect.left + col * cellW, rect.top + row * cellH];
            }
          }
          return null;
        }"""
    )
    terminal.page.mouse.move(x, y)
    terminal.page.mouse.move(x + 2, y)
    terminal.page.mouse.click(x + 2, y)
    terminal.page.wait_for_function("() => window.__opened > 0")


REFUSED_LOGIN = "Failed to load resource: the server responded with a status of 401"


def test_without_a_login_the_page_asks_for_the_token(
    browser: BrowserContext, server: RunningServer
) -> None:
    # A link opened twice: the second time (without the first's cookie) it is used up.
    link = server.link()
    first = TerminalPage.open(browser, link)
    browser.clear_cookies()
    second = TerminalPage.open(browser, link, connect=False)
    assert "already been used" in second.login_message()
    assert second.page.url == server.base_url
    assert second.state() == "connecting", "no socket without a login"
    second.sign_in("not-the-token")
    second.page.wait_for_function(
        "() => document.getElementById('login-message').textContent.includes('not valid')"
    )
    second.sign_in(server.token)
    second.wait_state("connected")
    assert not second.page.locator("#login").is_visible()
    second.wait_prompt()

    # Logging out ends this page's connection and login; the form comes back.
    second.eval("() => fetch('logout', {method: 'POST'})")
    assert "you logged out" in second.login_message()
    assert second.state() == "closed"
    second.sign_in(server.link_token())
    second.wait_state("connected")
    second.wait_prompt()
    # The browser logs the two refused logins (the used link, the wrong token), nothing else.
    assert second.errors == [f"{REFUSED_LOGIN} (Unauthorized)"] * 2, second.errors
    first.run("echo first-$((2*4))")
    first.wait_line("first-8")
    assert not first.errors


def test_an_old_style_query_link_still_works(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = TerminalPage.open(browser, f"{server.base_url}?token={server.link_token()}")
    assert terminal.page.url == server.base_url
    terminal.wait_prompt()
    assert not terminal.errors
