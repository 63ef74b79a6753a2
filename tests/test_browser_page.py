"""The terminal page's features in headless Chromium, through the real server and OpenSSH sshd:
search, font size, themes, the window title, the disconnect overlay, OSC 52 and the CSP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from tests.browser import RENDERER_KEY, TerminalPage, choose_webgl, chromium
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.tcpgate import tcp_gate

pytestmark = pytest.mark.browser

TERM = "window.__ec2terminal.term"


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


def open_terminal(browser: BrowserContext, url: str) -> TerminalPage:
    terminal = TerminalPage.open(browser, url)
    terminal.wait_prompt()
    return terminal


def colorful_output(terminal: TerminalPage, marker: str) -> None:
    """Output in 16, 256 and 24-bit colors, bold, underline and inverse, then `marker`."""
    terminal.run(
        "seq 1 60; printf '\\033[31mred \\033[1;38;5;208morange "
        "\\033[0;38;2;10;200;90;48;2;40;0;80mtrue \\033[4;7mboxed\\033[0m\\n'; "
        f"echo {marker}-$((40+2))"
    )
    terminal.wait_line(f"{marker}-42")


def test_dom_renderer_on_a_software_webgl_driver_unless_chosen(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server.link())
    # Headless Chromium here has WebGL 2 from SwiftShader, on the CPU: slower than the DOM.
    assert terminal.eval("() => window.__ec2terminal.renderer") == "dom"
    terminal.eval(f"() => localStorage.setItem('{RENDERER_KEY}', 'webgl')")
    terminal.page.reload()
    terminal.page.wait_for_function("() => window.__ec2terminal")
    assert terminal.eval("() => window.__ec2terminal.renderer") == "webgl"


def test_no_csp_violation_in_either_renderer(
    browser: BrowserContext, server: RunningServer
) -> None:
    choose_webgl(browser)
    terminal = open_terminal(browser, server.link())
    renderer = terminal.eval("() => window.__ec2terminal.renderer")
    assert renderer == "webgl", "headless Chromium here has WebGL (SwiftShader), chosen"
    colorful_output(terminal, "webgl")
    terminal.page.keyboard.press("Control+Shift+F")
    terminal.page.keyboard.type("orange")
    terminal.page.keyboard.press("Enter")
    # In the command line and in its output.
    terminal.page.wait_for_function(
        "() => / of 2$/.test(document.getElementById('search-count').textContent)"
    )
    terminal.page.keyboard.press("Escape")
    assert terminal.csp_violations() == [], "WebGL renderer"

    # The DOM renderer: what the page falls back to when WebGL is lost for good.
    terminal.eval(
        """() => {
          for (const canvas of document.querySelectorAll('#terminal canvas')) {
            const gl = canvas.getContext('webgl2');
            if (gl) gl.getExtension('WEBGL_lose_context').loseContext();
          }
        }"""
    )
    terminal.page.wait_for_function("() => window.__ec2terminal.renderer === 'dom'", timeout=15_000)
    colorful_output(terminal, "dom")
    true_color = terminal.page.locator(".xterm-rows span", has_text="true").last
    assert true_color.evaluate("e => getComputedStyle(e).color") == "rgb(10, 200, 90)", (
        "24-bit colors are style attributes, which style-src-attr allows"
    )
    terminal.page.emulate_media(color_scheme="dark")
    terminal.page.set_viewport_size({"width": 700, "height": 400})
    terminal.run("echo resized-$((1+1))")
    terminal.wait_line("resized-2")
    terminal.screenshot("browser-dom-renderer-colors.png")
    assert terminal.csp_violations() == [], "DOM renderer"
    assert not terminal.errors


def test_search_finds_a_word_in_scrollback(browser: BrowserContext, server: RunningServer) -> None:
    terminal = open_terminal(browser, server.link())
    terminal.run("seq -f 'line-%g' 1 200; echo needle-$((40+2)); seq -f 'after-%g' 1 300")
    terminal.wait_line("after-300")
    needle_row = terminal.lines().index("needle-42")
    rows = terminal.size()[1]
    assert terminal.eval(f"() => {TERM}.buffer.active.viewportY") > needle_row, "scrolled away"

    terminal.page.keyboard.press("Control+Shift+F")
    search = terminal.page.locator("#search-input")
    search.wait_for(state="visible")
    assert search.evaluate("e => e === document.activeElement")
    search.type("needle-42")
    terminal.page.wait_for_function(
        "() => document.getElementById('search-count').textContent === '1 of 1'"
    )
    top = terminal.eval(f"() => {TERM}.buffer.active.viewportY")
    assert top <= needle_row < top + rows, "the match is scrolled into view"
    assert terminal.eval(f"() => {TERM}.getSelection()") == "needle-42"

    search.fill("after-1")
    search.press("Enter")
    # after-1, after-10..19, after-100..199: 111 matches, the second one active after Enter.
    terminal.page.wait_for_function(
        "() => document.getElementById('search-count').textContent === '2 of 111'"
    )
    search.press("Shift+Enter")
    terminal.page.wait_for_function(
        "() => document.getElementById('search-count').textContent === '1 of 111'"
    )
    search.fill("no-such-word")
    terminal.page.wait_for_function(
        "() => document.getElementById('search-count').textContent === 'no match'"
    )
    terminal.screenshot("browser-search.png")
    search.press("Escape")
    assert terminal.page.locator("#search").is_hidden()
    assert terminal.page.evaluate("() => document.activeElement.className").startswith(
        "xterm-helper-textarea"
    ), "Escape gives the keyboard back to the terminal"
    assert not terminal.errors


def test_font_size_buttons_and_keys_resize_the_terminal_and_are_kept(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server.link())
    font = f"() => {TERM}.options.fontSize"
    assert terminal.eval(font) == 14
    cols, rows = terminal.size()
    terminal.page.locator("#font-larger").click()
    terminal.page.locator("#font-larger").click()
    assert terminal.eval(font) == 16
    assert terminal.page.locator("#font-size").inner_text() == "16px"
    bigger_cols, bigger_rows = terminal.size()
    assert bigger_cols < cols, "the terminal refits to the larger cells"
    assert bigger_rows < rows
    terminal.run("stty size")
    terminal.wait_line(f"{bigger_rows} {bigger_cols}")

    terminal.page.locator(".xterm-helper-textarea").focus()
    for _ in range(5):
        terminal.page.keyboard.press("Control+Minus")
    assert terminal.eval(font) == 11
    terminal.run("echo typed-$((2+2))")
    terminal.wait_line("typed-4")

    # Kept for the next visit (the same tab resumes its session).
    terminal.page.reload()
    terminal.wait_state("connected")
    assert terminal.eval(font) == 11
    terminal.page.locator(".xterm-helper-textarea").focus()
    terminal.page.keyboard.press("Control+0")
    assert terminal.eval(font) == 14
    assert not terminal.errors


def test_themes_follow_the_system(browser: BrowserContext, server: RunningServer) -> None:
    terminal = open_terminal(browser, server.link())
    background = f"() => {TERM}.options.theme.background"
    page_bg = "() => getComputedStyle(document.body).backgroundColor"
    terminal.page.emulate_media(color_scheme="dark")
    terminal.page.wait_for_function(f"() => {TERM}.options.theme.background === '#101418'")
    assert terminal.eval(page_bg) == "rgb(16, 20, 24)"
    terminal.run("printf '\\033[32mgreen\\033[0m\\n'")
    terminal.wait_line("green")
    terminal.screenshot("browser-theme-dark.png")
    terminal.page.emulate_media(color_scheme="light")
    terminal.page.wait_for_function(f"() => {TERM}.options.theme.background === '#ffffff'")
    assert terminal.eval(page_bg) == "rgb(255, 255, 255)"
    assert terminal.eval(background) == "#ffffff"
    terminal.screenshot("browser-theme-light.png")
    assert not terminal.errors


def test_the_window_title_comes_from_the_remote(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server.link())
    terminal.run("printf '\\033]0;build on %s\\007' web-$((1+2))")
    terminal.page.wait_for_function("() => document.title === 'build on web-3 · ec2-terminal'")
    terminal.run("printf '\\033]2;<b>tail</b>\\033\\\\'")
    terminal.page.wait_for_function("() => document.title === '<b>tail</b> · ec2-terminal'")
    terminal.run("printf '\\033]2;\\007'")
    terminal.page.wait_for_function("() => document.title === 'ec2-terminal'")
    assert not terminal.errors


def test_the_overlay_shows_while_disconnected_and_reconnect_resumes(
    browser: BrowserContext, server: RunningServer
) -> None:
    with tcp_gate(server.port) as gate:
        url = f"http://127.0.0.1:{gate.port}/#token={server.link_token()}"
        terminal = open_terminal(browser, url)
        terminal.run("cd /tmp && export MARK=kept-$((3*3))")
        overlay = terminal.page.locator("#disconnected")
        assert overlay.is_hidden()

        gate.close()
        overlay.wait_for(state="visible")
        assert terminal.page.locator("#disconnected-title").inner_text() == "Connection lost"
        assert "Reconnecting" in terminal.page.locator("#disconnected-detail").inner_text()
        assert terminal.page.locator("#reconnect").inner_text() == "Reconnect now"
        terminal.screenshot("browser-disconnected.png")

        # Three refused retries: the next one waits about 4 s; the button retries at once.
        terminal.page.wait_for_function(
            "() => window.__ec2terminal.states.filter((s) => s.includes('retrying')).length >= 4"
        )
        gate.open()
        terminal.page.locator("#reconnect").click()
        terminal.wait_state("connected", timeout=2.5)
        overlay.wait_for(state="hidden")
        terminal.run("echo $MARK in $PWD")
        terminal.wait_line("kept-9 in /tmp")


def test_after_a_server_restart_the_page_asks_to_sign_in_and_starts_anew(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd)
    terminal = open_terminal(browser, server.link())
    server.stop()
    overlay = terminal.page.locator("#disconnected")
    overlay.wait_for(state="visible")
    assert terminal.page.locator("#disconnected-title").inner_text() == "Session ended"
    assert "shutting down" in terminal.page.locator("#disconnected-detail").inner_text()
    assert terminal.page.locator("#reconnect").inner_text() == "New session"

    # The same address and token, but a new process: the session and the login are gone.
    token_file = server.log_path.parent / "token"
    again = server_factory(sshd, listen_port=server.port, token_file=str(token_file))
    assert again.port == server.port
    terminal.page.locator("#reconnect").click()
    message = terminal.login_message()
    assert "sign in again" in message
    assert overlay.is_hidden(), "the sign-in form has the say"
    terminal.sign_in(server.token)
    terminal.wait_state("connected")
    terminal.wait_prompt()
    assert overlay.is_hidden()


def test_a_session_that_exits_shows_no_overlay(
    browser: BrowserContext, server: RunningServer
) -> None:
    terminal = open_terminal(browser, server.link())
    terminal.run("exit 3")
    terminal.wait_state("closed")
    assert terminal.page.locator("#new-session").is_visible()
    assert terminal.page.locator("#disconnected").is_hidden()


def _osc52(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_osc52_sets_the_clipboard_only_when_enabled(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd
) -> None:
    browser.grant_permissions(["clipboard-read", "clipboard-write"])
    read = "() => navigator.clipboard.readText()"
    for enabled in (False, True):
        server = server_factory(sshd, clipboard_osc52="on" if enabled else "off")
        terminal = open_terminal(browser, server.link())
        terminal.eval("() => navigator.clipboard.writeText('before')")
        payload = _osc52("from the remote ✓")
        terminal.run(f"printf '\\033]52;c;%s\\007' {payload}; echo sent-$((1+1))")
        terminal.wait_line("sent-2")
        # A query is never answered: nothing on the target reads the clipboard.
        terminal.run("printf '\\033]52;c;?\\007'; read -t 2 -r -s reply; echo got-${#reply}")
        terminal.wait_line("got-0")
        if enabled:
            terminal.page.wait_for_function(
                f"() => ({read})().then((t) => t === 'from the remote ✓')"
            )
        else:
            assert terminal.eval(read) == "before"
        assert not terminal.errors
        terminal.page.close()


def test_the_recordings_link_shows_when_the_server_records(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    plain = open_terminal(browser, server_factory(sshd).link())
    assert plain.page.locator("#recordings-link").is_hidden()
    recording = server_factory(sshd, recordings_dir=str(tmp_path / "casts"))
    terminal = open_terminal(browser, recording.link())
    link = terminal.page.locator("#recordings-link")
    link.wait_for(state="visible")
    assert link.get_attribute("href") == "recordings/"
