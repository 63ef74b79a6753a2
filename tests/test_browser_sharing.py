"""Shared viewing in the page: the owner's Share link watched read-only by another person."""

from __future__ import annotations

import pytest

from tests.browser import TerminalPage, two_people
from tests.fixtures_server import RunningServer

pytestmark = pytest.mark.browser

WATCHERS_JS = "(n) => document.getElementById('viewers').textContent === n"


def test_a_share_link_watches_the_session_read_only_from_another_browser(
    server: RunningServer,
) -> None:
    with two_people() as (mine, elsewhere):
        owner = TerminalPage.open(mine, server.link())
        owner.wait_prompt()
        owner.run("clear; printf 'before-%s\\n' $((40+2))")
        owner.wait_line("before-42")
        owner.page.locator("#share").click()
        link = owner.page.locator("#share-link").input_value()
        owner.screenshot("browser-share.png")
        assert link.startswith(f"{server.base_url}#view=")
        assert owner.eval("() => window.__ec2terminal.connection.sessionId") not in link

        # Another person: without a login, the link shows nothing but the sign-in form.
        viewer = TerminalPage.open(elsewhere, link, connect=False)
        viewer.sign_in(server.link_token())
        viewer.wait_state("connected")
        # Joining late, the viewer sees what is already on the owner's screen, at its size.
        viewer.wait_line("before-42")
        assert viewer.page.url == link, "the view stays in the address, for a reload"
        assert viewer.size() == owner.size()
        assert viewer.page.locator("#read-only").is_visible()
        assert not viewer.page.locator("#share").is_visible()
        owner.page.wait_for_function(WATCHERS_JS, arg="1 watching")

        owner.run("echo live-$((6*7))")
        viewer.wait_line("live-42")
        viewer.run("echo from-viewer-$((1+1))")  # the page sends no keys
        owner.run("echo owner-$((2+2))")
        owner.wait_line("owner-4")
        viewer.wait_line("owner-4")
        assert not any("from-viewer-2" in line for line in owner.lines())

        # The owner's window grows: the viewer's terminal follows the owner's size.
        owner.page.set_viewport_size({"width": 1200, "height": 640})
        owner.page.wait_for_function("() => window.__ec2terminal.term.cols > 100")
        owner.run("echo resized-$((1+2))")
        owner.wait_line("resized-3")
        cols, rows = owner.size()
        viewer.page.wait_for_function(
            "([c, r]) => window.__ec2terminal.term.cols === c"
            " && window.__ec2terminal.term.rows === r",
            arg=[cols, rows],
        )
        viewer.screenshot("browser-viewer.png")
        assert not viewer.errors
        assert {v.split()[0] for v in viewer.csp_violations()} <= {"style-src-elem"}

        viewer.page.close()
        owner.page.wait_for_function(WATCHERS_JS, arg="")

        # A share link with a link token of its own signs in and watches in one step, and the
        # token leaves the address while the view stays.
        elsewhere.clear_cookies()
        again = TerminalPage.open(elsewhere, f"{link}&token={server.link_token()}")
        again.wait_line("owner-4")
        assert again.page.url == link
        assert not again.errors
        assert not owner.errors
