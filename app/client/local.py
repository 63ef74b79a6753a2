"""This process's own terminal: raw mode while attached, keys in, output out, size changes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import TextIO

from app.terminal.types import Size

# Keys read but not sent yet; beyond this, standard input is not read until some are sent.
MAX_PENDING_INPUT = 1024 * 1024
DEFAULT_SIZE = Size(80, 24)


class LocalTerminal:
    """Standard input, output and error of this process, as the attach client needs them."""

    def __init__(self, stdin: int = 0, stdout: int = 1, stderr: TextIO = sys.stderr) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.keys: asyncio.Queue[bytes] = asyncio.Queue()
        self.resized = asyncio.Event()
        self._pending = 0
        self._polled = False  # read through the event loop (else on a thread)
        self._reading = False
        self._eof = False
        self._room = threading.Event()
        self._room.set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def interactive(self) -> bool:
        """Whether standard input is a terminal (a person typing, not a script)."""
        return os.isatty(self.stdin)

    @contextlib.contextmanager
    def raw(self) -> Iterator[None]:
        """Raw mode on a terminal (every key goes to the remote side as typed); restored after."""
        if not self.interactive:
            yield
            return
        saved = termios.tcgetattr(self.stdin)
        tty.setraw(self.stdin, termios.TCSANOW)
        try:
            yield
        finally:
            termios.tcsetattr(self.stdin, termios.TCSADRAIN, saved)

    def size(self) -> Size:
        """The terminal's size: of standard output, else input, else 80x24."""
        for fd in (self.stdout, self.stdin):
            with contextlib.suppress(OSError):
                cols, rows = os.get_terminal_size(fd)
                if cols > 0 and rows > 0:
                    return Size(min(cols, 1000), min(rows, 1000))
        return DEFAULT_SIZE

    def start(self) -> None:
        """Begin reading keys into `keys` (b"" at end of input) and noting window changes."""
        loop = self._loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread: no signals
            loop.add_signal_handler(signal.SIGWINCH, self.resized.set)
        try:
            loop.add_reader(self.stdin, self._readable)
        except (PermissionError, OSError):
            # A regular file or /dev/null cannot be polled: read it on a thread instead.
            threading.Thread(target=self._read_blocking, daemon=True, name="stdin").start()
        else:
            self._polled = self._reading = True

    def stop(self) -> None:
        """Stop reading keys and noting window changes."""
        if self._loop is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_signal_handler(signal.SIGWINCH)
        self._eof = True
        self._pause()

    def taken(self, count: int) -> None:
        """`count` bytes of keys were sent: read on if reading had stopped to wait for that."""
        self._pending -= count
        if self._pending <= MAX_PENDING_INPUT:
            self._room.set()
            if not self._eof and self._polled and not self._reading and self._loop is not None:
                self._loop.add_reader(self.stdin, self._readable)
                self._reading = True

    def _pause(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.stdin)
            self._reading = False

    def _readable(self) -> None:
        try:
            data = os.read(self.stdin, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._push(data)
        if not data:
            self._eof = True
            self._pause()
        elif self._pending > MAX_PENDING_INPUT:
            self._pause()

    def _push(self, data: bytes) -> None:
        self._pending += len(data)
        self.keys.put_nowait(data)

    def _read_blocking(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            self._room.wait()
            try:
                data = os.read(self.stdin, 65536)
            except OSError:
                data = b""
            if self._pending + len(data) > MAX_PENDING_INPUT:
                self._room.clear()
            loop.call_soon_threadsafe(self._push, data)
            if not data:
                return

    async def write(self, data: bytes) -> None:
        """Write output to standard output, all of it (on a thread: a slow reader must not stall
        the event loop, which answers the server's pings)."""
        await asyncio.to_thread(self._write_all, data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.stdout, view)
            view = view[written:]

    def notice(self, text: str) -> None:
        """A line for the person at the terminal, on standard error (raw mode: CR LF)."""
        self.stderr.write(f"\r\n[ec2-terminal] {text}\r\n")
        self.stderr.flush()
