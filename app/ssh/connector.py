"""SSH to the target with asyncssh: connect, verify the host, open a PTY, map failures."""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE

from app.errors import TerminalError
from app.settings import Limits
from app.ssh.errors import (
    AuthenticationFailed,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    HostKeyNotVerifiable,
    HostNotFound,
    SSHError,
)
from app.ssh.hostkeys import HostKeyVerifier, sha256
from app.ssh.plan import ConnectPlan
from app.ssh.readbuffer import ReadBuffer
from app.ssh.sftp import SFTPFiles
from app.telemetry import annotate, record_span, traced
from app.terminal.ports import OutputSink
from app.terminal.types import ExitInfo, Size

log = logging.getLogger(__name__)

TERM_TYPE = "xterm-256color"
# AES-GCM runs on the CPU's AES instructions through OpenSSL: about twice the throughput of
# asyncssh's ChaCha20-Poly1305 here. All of these are current, authenticated ciphers.
CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]
PlanSource = Callable[[int], Awaitable[ConnectPlan]]


class _Client(asyncssh.SSHClient):
    """Verifies the host key with our verifier and keeps its verdict for the error message."""

    def __init__(self, verifier: HostKeyVerifier) -> None:
        self.verifier = verifier
        self.refusal: TerminalError | None = None
        # When authentication began and ended (ns since the epoch), for its span.
        self.auth_started: int | None = None
        self.auth_ended: int | None = None

    def begin_auth(self, username: str) -> None:
        self.auth_started = time.time_ns()

    def auth_completed(self) -> None:
        self.auth_ended = time.time_ns()

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # Every failure becomes a plain refusal: asyncssh would send an exception's text to the
        # target as the disconnect reason, and a parse error may quote key material.
        try:
            self.verifier.verify(host, port, key)
        except TerminalError as exc:
            self.refusal = exc
            return False
        except Exception as exc:
            log.warning("host key check failed with %s", type(exc).__name__)
            self.refusal = HostKeyNotVerifiable(f"the host key of {host} could not be checked")
            return False
        return True


class _Channel(asyncssh.SSHClientSession[bytes]):
    """Hands the PTY's output to the sink and tracks when writing may continue."""

    def __init__(self, sink: OutputSink) -> None:
        self.sink = sink
        self.exit_status: int | None = None
        self.exit_reason = "the remote shell exited"
        self.writable = asyncio.Event()
        self.writable.set()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.sink.feed(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_reason = f"the remote shell was killed by signal {signal}"

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        reason = self.exit_reason if exc is None else f"connection to the host was lost: {exc}"
        self.sink.ended(ExitInfo(self.exit_status, reason))


class _CorkedTransport:
    """The connection's transport, able to hold writes back and send them as one.

    A channel write larger than one SSH packet (a paste) makes several packets, each written
    on its own: corked around the write, they leave in one send(2).
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._transport.write(data)
        else:
            self._held.append(data)

    def hold(self) -> None:
        """Keep writes back until `release` (a method pair: a context manager per key costs)."""
        self._held = []

    def release(self) -> None:
        """Write what was held, as one."""
        held, self._held = self._held, None
        if held:
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _cork(conn: asyncssh.SSHClientConnection) -> _CorkedTransport | None:
    """Put a corkable transport under `conn` (None if this asyncssh keeps it elsewhere)."""
    transport = getattr(conn, "_transport", None)
    # Not isinstance(asyncio.Transport): uvloop's transports do not derive from it.
    if transport is None or not callable(getattr(transport, "write", None)):
        return None
    corked = _CorkedTransport(transport)
    conn._transport = corked  # type: ignore[assignment]
    return corked


def _parse_in_place(conn: asyncssh.SSHClientConnection) -> None:
    """Give the connection a receive buffer whose rest is never copied (ReadBuffer)."""
    pending = getattr(conn, "_inpbuf", None)
    if isinstance(pending, bytes):  # else an asyncssh that keeps it otherwise: leave it
        conn._inpbuf = ReadBuffer(pending)  # type: ignore[assignment]


def _drop_cbc_padding(conn: asyncssh.SSHClientConnection) -> None:
    """Stop asyncssh sending an SSH_MSG_IGNORE before every packet once encrypted.

    asyncssh does so for every cipher, as RFC 4251 (9.3.1) advises against a chosen-plaintext
    attack on CBC's predictable IVs; none of CIPHERS is a CBC mode (AES-GCM and
    ChaCha20-Poly1305 are AEAD, CTR has no chained IV), so it only costs: a second packet per
    keystroke to build, encrypt, send, and for sshd to decrypt and skip. Kept if the
    connection somehow negotiated a CBC cipher.
    """
    cipher = str(conn.get_extra_info("send_cipher", ""))
    if "cbc" in cipher:
        return
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype != MSG_IGNORE:
            send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet  # type: ignore[method-assign]


class SSHTerminal:
    """A shell in a PTY over one SSH connection."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        channel: asyncssh.SSHClientChannel[bytes],
        handler: _Channel,
        sftp_timeout: float,
    ) -> None:
        self._conn = conn
        self._channel = channel
        self._handler = handler
        self._transport = _cork(conn)
        _drop_cbc_padding(conn)
        _parse_in_place(conn)
        self._files = SFTPFiles(conn, sftp_timeout)
        key = conn.get_server_host_key()
        self.host_key_sha256 = sha256(key) if key is not None else ""

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._channel.write(data)
            return
        self._transport.hold()
        try:
            self._channel.write(data)
        finally:
            self._transport.release()

    async def drain(self) -> None:
        await self._handler.writable.wait()

    def writable(self) -> bool:
        return self._handler.writable.is_set()

    def resize(self, size: Size) -> None:
        self._channel.change_terminal_size(size.cols, size.rows)

    def pause_reading(self) -> None:
        self._channel.pause_reading()

    def resume_reading(self) -> None:
        self._channel.resume_reading()

    def close(self) -> None:
        self._channel.close()
        self._conn.close()

    def files(self) -> SFTPFiles:
        return self._files


def _all_refused(exc: BaseException) -> bool:
    """asyncio's "Multiple exceptions" error, when every address of the host refused."""
    if not isinstance(exc, OSError) or exc.errno is not None:
        return False
    codes = set(re.findall(r"\[Errno (\d+)\]", str(exc)))
    return codes == {str(errno.ECONNREFUSED)}


def _user_error(exc: BaseException, plan: ConnectPlan, client: _Client | None) -> TerminalError:
    """Translate a connection failure into what the user should know."""
    where = f"{plan.host}:{plan.port}"
    if isinstance(exc, TerminalError):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        if client is not None and client.refusal is not None:
            return client.refusal
        return HostKeyNotVerifiable(f"the host key of {where} could not be verified")
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthenticationFailed(f"{where} refused the login of user {plan.user!r}")
    if isinstance(exc, TimeoutError):
        return ConnectTimeout(f"{where} did not answer in time")
    if isinstance(exc, socket.gaierror):
        return HostNotFound(f"host name {plan.host!r} could not be resolved")
    if isinstance(exc, ConnectionRefusedError) or _all_refused(exc):
        return ConnectionRefused(f"{where} refused the connection: is sshd running on that port?")
    if isinstance(exc, asyncssh.ConnectionLost | ConnectionResetError):
        return ConnectionLost(f"{where} closed the connection during setup")
    if isinstance(exc, asyncssh.Error):
        return SSHError(f"SSH to {where} failed: {exc.reason}")
    if isinstance(exc, OSError):
        return SSHError(f"could not reach {where}: {exc.strerror or exc}")
    return SSHError(f"SSH to {where} failed: {type(exc).__name__}")


class SSHConnector:
    """Opens SSH terminals for new sessions."""

    def __init__(self, plans: PlanSource, limits: Limits) -> None:
        self._plans = plans
        self._limits = limits

    @traced("ssh.connect")
    async def open(self, size: Size, sink: OutputSink) -> SSHTerminal:
        """Connect, start the login shell in a PTY of `size`, stream its output to `sink`."""
        plan = await self._plans(0)
        try:
            return await self._open(plan, size, sink)
        except AuthenticationFailed:
            if not plan.retry_auth_once:
                raise
            log.info("login to %s refused; retrying once with fresh credentials", plan.label)
            return await self._open(await self._plans(1), size, sink)

    async def _open(self, plan: ConnectPlan, size: Size, sink: OutputSink) -> SSHTerminal:
        client: _Client | None = None
        annotate(
            {
                "server.address": plan.host,
                "server.port": plan.port,
                "ec2_terminal.ssh.user": plan.user,
            }
        )

        def make_client() -> _Client:
            nonlocal client
            client = _Client(plan.verifier)
            return client

        options: dict[str, Any] = {
            "username": plan.user,
            "client_keys": plan.client_keys,
            # An empty trust set makes asyncssh ask our client's verifier about every key.
            "known_hosts": ([], [], []),
            "client_factory": make_client,
            "agent_path": None,
            "config": [],
            "preferred_auth": "publickey",
            "encryption_algs": CIPHERS,
            "keepalive_interval": self._limits.keepalive_interval,
            "keepalive_count_max": 3,
        }
        conn: asyncssh.SSHClientConnection | None = None
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                conn = await asyncssh.connect(plan.host, plan.port, **options)
                channel, handler = await conn.create_session(
                    lambda: _Channel(sink),
                    term_type=TERM_TYPE,
                    term_size=(size.cols, size.rows),
                    encoding=None,
                )
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if conn is not None:
                conn.close()
            error = _user_error(exc, plan, client)
            _record_auth(client, error)
            raise error from None
        _record_auth(client, None)
        log.info("connected to %s", plan.label)
        assert isinstance(handler, _Channel)
        return SSHTerminal(conn, channel, handler, self._limits.connect_timeout)


def _record_auth(client: _Client | None, error: TerminalError | None) -> None:
    """The authentication that ran during a connect, as a span of its own (if it began)."""
    if client is None or client.auth_started is None:
        return
    failed = error if client.auth_ended is None else None
    record_span(
        "ssh.authenticate",
        client.auth_started,
        client.auth_ended or time.time_ns(),
        {"ec2_terminal.ssh.auth_method": "publickey"},
        failed,
    )
