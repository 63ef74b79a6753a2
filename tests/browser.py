"""Headless Chromium (Debian's, through Playwright) driving the terminal page, for browser tests."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# Reads the terminal through the object the page exposes for tests (no secrets in it).
_SCREEN_JS = """() => {
  const buf = window.__ec2terminal.term.buffer.active;
  const lines = [];
  for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i).translateToString(true));
  return lines;
}"""
#: The page's localStorage key for a chosen renderer (web/src/renderer.ts).
RENDERER_KEY = "ec2-terminal:renderer"
# Collects CSP violations from the first script on, before the page's own.
_CSP_WATCH_JS = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.effectiveDirective + ' ' + (e.blockedURI || 'inline')));"""


def choose_webgl(context: BrowserContext) -> None:
    """Pages of `context` render with WebGL, as a user may choose (SwiftShader here, on the CPU)."""
    context.add_init_script(f"localStorage.setItem('{RENDERER_KEY}', 'webgl');")


@contextlib.contextmanager
def chromium(
    width: int = 900, height: int = 500, args: Sequence[str] = ()
) -> Iterator[BrowserContext]:
    """A fresh headless Chromium profile, with ARGS after the usual flags; never downloads one."""
    with tempfile.TemporaryDirectory(prefix="ec2t-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_ARGS, *args],
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


@contextlib.contextmanager
def two_people(
    size: tuple[int, int] = (900, 500), other_size: tuple[int, int] = (700, 380)
) -> Iterator[tuple[BrowserContext, BrowserContext]]:
    """Two isolated browser contexts of one headless Chromium: two people, cookies apart."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            first = browser.new_context(viewport={"width": size[0], "height": size[1]})
            second = browser.new_context(viewport={"width": other_size[0], "height": other_size[1]})
            yield first, second
        finally:
            browser.close()


@dataclass
class TerminalPage:
    """The terminal page in a browser tab, with waits on what it shows."""

    page: Page
    #: Uncaught exceptions and console errors of the page.
    errors: list[str] = field(default_factory=list)
    #: What the console said about the Content Security Policy (Chromium logs each refusal).
    csp_console: list[str] = field(default_factory=list)
    #: The HTTP status of each response on the way to the page (redirects first).
    statuses: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, context: BrowserContext, url: str, connect: bool = True) -> TerminalPage:
        """Open `url` (usually a link) and, with `connect`, wait until the session is connected."""
        terminal = cls(context.new_page())
        page = terminal.page
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: terminal.errors.append(str(exc)))
        page.on("console", terminal._console)
        page.add_init_script(_CSP_WATCH_JS)
        response = page.goto(url)
        assert response is not None
        request = response.request
        while request.redirected_from is not None:
            request = request.redirected_from
            earlier = request.response()
            terminal.statuses.insert(0, earlier.status if earlier else 0)
        terminal.statuses.append(response.status)
        if connect:
            terminal.wait_state("connected")
        return terminal

    def eval(self, js: str, arg: Any = None) -> Any:
        """Evaluate JS in the page; wait_for_function needs arrow functions (CSP forbids eval)."""
        return self.page.evaluate(js, arg)

    def state(self) -> str:
        return str(self.eval("() => window.__ec2terminal.connection.uiState"))

    def wait_state(self, state: str, timeout: float = 15) -> None:
        self.page.wait_for_function(
            "(s) => window.__ec2terminal && window.__ec2terminal.connection.uiState === s",
            arg=state,
            timeout=timeout * 1000,
        )

    def lines(self) -> list[str]:
        """Every line of the terminal buffer (scrollback and screen), trailing blanks trimmed."""
        return [str(line) for line in self.eval(_SCREEN_JS)]

    def wait_line(self, text: str, timeout: float = 15) -> None:
        """Wait until some terminal line is exactly `text` (after trimming spaces)."""
        self.page.wait_for_function(
            """(want) => {
              const buf = window.__ec2terminal.term.buffer.active;
              for (let i = 0; i < buf.length; i++) {
                if (buf.getLine(i).translateToString(true).trim() === want) return true;
              }
              return false;
            }""",
            arg=text,
            timeout=timeout * 1000,
        )

    def wait_prompt(self) -> None:
        """Wait until the shell is ready: a marker echoed by the shell comes back."""
        self.run("echo ready-$((40+2))")
        self.wait_line("ready-42")

    def run(self, command: str) -> None:
        """Type a command line into the terminal as a user would, and press Enter."""
        self.page.locator(".xterm-helper-textarea").focus()
        self.page.keyboard.type(command)
        self.page.keyboard.press("Enter")

    def size(self) -> tuple[int, int]:
        cols, rows = self.eval(
            "() => [window.__ec2terminal.term.cols, window.__ec2terminal.term.rows]"
        )
        return int(cols), int(rows)

    def sign_in(self, token: str) -> None:
        """Paste `token` into the sign-in form and submit it."""
        form = self.page.locator("#login")
        form.wait_for(state="visible")
        self.page.locator("#login-token").fill(token)
        self.page.locator("#login-submit").click()

    def login_message(self) -> str:
        """What the visible sign-in form says (it waits for the form)."""
        self.page.locator("#login").wait_for(state="visible")
        self.page.wait_for_function(
            "() => document.getElementById('login-message').textContent !== ''"
        )
        return str(self.page.locator("#login-message").inner_text())

    def csp_violations(self) -> list[str]:
        """The page's `securitypolicyviolation` events and the console's CSP messages."""
        return [str(v) for v in self.eval("() => window.__csp")] + self.csp_console

    def _console(self, msg: ConsoleMessage) -> None:
        if "Content Security Policy" in msg.text:
            self.csp_console.append(msg.text)
        if msg.type == "error":
            self.errors.append(msg.text)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path
