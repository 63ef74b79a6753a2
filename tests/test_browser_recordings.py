"""The recordings page in headless Chromium: a real session's recording plays in the player."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from app.settings import MIN_RECORDING_BYTES
from app.terminal.recording import SIZE_LIMIT_REACHED
from tests.browser import TerminalPage, chromium
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd

pytestmark = pytest.mark.browser

# The text asciinema-player shows on its screen (its rows are spans in a <pre>).
_PLAYER_TEXT_JS = "() => document.querySelector('#player .ap-term')?.textContent ?? ''"


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    with chromium(width=1100, height=800) as context:
        yield context


def test_a_capped_recording_plays_in_the_page_and_the_shell_goes_on(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    server = server_factory(
        sshd, recordings_dir=str(tmp_path / "casts"), max_recording_bytes=MIN_RECORDING_BYTES
    )
    terminal = TerminalPage.open(browser, server.link())
    terminal.wait_prompt()
    terminal.run("seq 1 1500 | tail -n 3; seq 1 3000 > /dev/null; seq 1 2000; echo seq-$((1+2))")
    terminal.wait_line("seq-3")
    terminal.run("echo after-$((6*7))")
    terminal.wait_line("after-42")

    # Same login cookie: the page lists the recording and plays it up to the marker.
    page = TerminalPage.open(browser, f"{server.base_url}recordings/", connect=False)
    row = page.page.locator("#recordings-list tr")
    row.wait_for()
    assert row.count() == 1
    assert "1 recording" in page.page.locator("#recordings-message").inner_text()
    row.locator("a.play").click()
    page.page.wait_for_function(
        "(want) => (document.querySelector('#player .ap-term')?.textContent ?? '').includes(want)",
        arg=f"[{SIZE_LIMIT_REACHED}]",
        timeout=60_000,
    )
    shown = str(page.eval(_PLAYER_TEXT_JS))
    assert "after-42" not in shown, "nothing is recorded after the cap"
    page.screenshot("browser-recording-player.png")
    assert not page.errors
    assert page.csp_violations() == []
    # The terminal still works after the cap.
    terminal.run("echo still-$((2+3))")
    terminal.wait_line("still-5")


def test_the_recordings_page_without_a_login_says_to_sign_in(
    browser: BrowserContext, server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    server = server_factory(sshd, recordings_dir=str(tmp_path / "casts"))
    page = TerminalPage.open(browser, f"{server.base_url}recordings/", connect=False)
    message = page.page.locator("#recordings-message")
    page.page.wait_for_function(
        "() => document.getElementById('recordings-message').textContent.includes('Sign in')"
    )
    assert message.locator("a").get_attribute("href") == "../"
    assert page.page.locator("#recordings-table").is_hidden()
    assert page.csp_violations() == []
