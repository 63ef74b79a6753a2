"""A private tmux server that runs a command in a real terminal: keys in, the screen out."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import env_without_proxies, poll

TMUX = shutil.which("tmux")


class Tmux:
    """One tmux session on its own socket (the machine's tmux servers are never touched)."""

    def __init__(self, directory: Path, cols: int, rows: int) -> None:
        if TMUX is None:
            raise AssertionError("tmux is not installed: run hack/setup")
        self.socket = directory / "tmux.sock"
        self.cols, self.rows = cols, rows

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            [str(TMUX), "-S", str(self.socket), "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env_without_proxies(),
            check=False,
        )
        assert done.returncode == 0, f"tmux {args[0]} failed: {done.stderr}"
        return done.stdout

    def start(self, argv: list[str], status_file: Path) -> None:
        """Run `argv` in a window of cols x rows; its exit status goes to `status_file`."""
        command = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(status_file))}; sleep 3600"
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", str(self.cols), "-y", str(self.rows), command
        )
        self._tmux("set-option", "-g", "status", "off")

    def type(self, text: str, enter: bool = True) -> None:
        """Type `text` (literally), then Enter."""
        self._tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self._tmux("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        """What the window shows now, one line per row."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen().splitlines()]

    def wait_line(self, text: str, timeout: float = 20) -> None:
        """Wait until some row shows exactly `text`."""
        poll(
            lambda: text in self.lines(), timeout, f"{text!r} on the tmux screen:\n{self.screen()}"
        )

    def wait_text(self, text: str, timeout: float = 20) -> None:
        """Wait until `text` is somewhere on the screen."""
        poll(lambda: text in self.screen(), timeout, f"{text!r} on the tmux screen")

    def resize(self, cols: int, rows: int) -> None:
        """Resize the window (the program in it gets SIGWINCH)."""
        self._tmux("resize-window", "-t", "t", "-x", str(cols), "-y", str(rows))

    def kill(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self._tmux("kill-server")


@contextlib.contextmanager
def tmux(directory: Path, cols: int = 80, rows: int = 24) -> Iterator[Tmux]:
    """A tmux server for the test, killed afterwards."""
    session = Tmux(directory, cols, rows)
    try:
        yield session
    finally:
        session.kill()
