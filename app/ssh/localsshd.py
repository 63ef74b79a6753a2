"""A loopback SSH server that runs the user's login shell in a real PTY, for `ec2-terminal demo`."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import struct
import subprocess
import termios
from collections.abc import Sequence

import asyncssh

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024


def _set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _PtySession(asyncssh.SSHServerSession[bytes]):
    """One SSH session: a shell on a PTY, with output paced by the SSH channel's window."""

    def __init__(self, shell: Sequence[str]) -> None:
        self.shell = list(shell)
        self.term_type = "xterm-256color"
        self.size = (80, 24)
        self.master: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.pending = bytearray()
        self.loop = asyncio.get_running_loop()

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], modes: object
    ) -> bool:
        self.term_type = term_type or self.term_type
        self.size = (term_size[0] or 80, term_size[1] or 24)
        return True

    def shell_requested(self) -> bool:
        return True

    def session_started(self) -> None:
        master, slave = os.openpty()
        _set_winsize(slave, *self.size)
        env = {**os.environ, "TERM": self.term_type}
        self.process = subprocess.Popen(
            self.shell,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=os.path.expanduser("~"),
            start_new_session=True,
            preexec_fn=_take_controlling_tty,  # the shell needs its PTY as controlling terminal
            close_fds=True,
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.loop.add_reader(master, self._read)

    def _read(self) -> None:
        assert self.master is not None
        assert self.chan is not None
        try:
            data = os.read(self.master, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("demo PTY read failed: %s", exc)
            data = b""
        if data:
            self.chan.write(data)
        else:
            self._finish()

    def _finish(self) -> None:
        assert self.chan is not None
        if self.master is not None:
            self.loop.remove_reader(self.master)
            self.loop.remove_writer(self.master)
            os.close(self.master)
            self.master = None
        status = self.process.wait() if self.process else 255
        self.chan.exit(status if status >= 0 else 128 - status)

    # Pace the shell by the SSH window: stop reading its PTY while the channel is backed up.
    def pause_writing(self) -> None:
        if self.master is not None:
            self.loop.remove_reader(self.master)

    def resume_writing(self) -> None:
        if self.master is not None:
            self.loop.add_reader(self.master, self._read)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.master is None:
            return
        self.pending += data
        self._write()

    def _write(self) -> None:
        assert self.master is not None
        try:
            written = os.write(self.master, self.pending)
        except BlockingIOError:
            written = 0
        del self.pending[:written]
        if self.pending:
            self.loop.add_writer(self.master, self._write)
        else:
            self.loop.remove_writer(self.master)

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.master is not None:
            _set_winsize(self.master, width, height)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
        if self.master is not None:
            self.loop.remove_reader(self.master)
            self.loop.remove_writer(self.master)
            os.close(self.master)
            self.master = None


class _Server(asyncssh.SSHServer):
    """Accepts exactly one public key, for the current user only."""

    def __init__(self, user: str, client_key: asyncssh.SSHKey, shell: Sequence[str]) -> None:
        self.user = user
        self.client_key = client_key
        self.shell = shell

    def session_requested(self) -> _PtySession:
        return _PtySession(self.shell)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.user and key.public_data == self.client_key.public_data


async def start_local_sshd(
    user: str,
    host_key: asyncssh.SSHKey,
    client_key: asyncssh.SSHKey,
    shell: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 0,
) -> asyncssh.SSHAcceptor:
    """Listen on `host`:`port` for SSH from `client_key`, serving `shell` in a PTY."""
    return await asyncssh.create_server(
        lambda: _Server(user, client_key, shell),
        host,
        port,
        server_host_keys=[host_key],
        encoding=None,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        keepalive_interval=30,
    )
