"""SSH failures as user-facing errors, each with its protocol code and WebSocket close code."""

from __future__ import annotations

from app.errors import TerminalError
from app.terminal.closecodes import CloseCode


class SSHError(TerminalError):
    """Reaching or talking to the target over SSH failed."""

    code = "ssh_error"
    close_code = CloseCode.NORMAL


class HostNotFound(SSHError):
    """The target's name does not resolve."""

    code = "host_not_found"


class ConnectionRefused(SSHError):
    """Nothing listens on the target's SSH port."""

    code = "connection_refused"


class ConnectTimeout(SSHError):
    """The target did not answer within the connect timeout."""

    code = "connect_timeout"


class AuthenticationFailed(SSHError):
    """The target refused our credentials."""

    code = "auth_failed"


class HostKeyNotVerifiable(SSHError):
    """The target's host key is not the one we trust: we refuse to connect."""

    code = "host_key_mismatch"


class ConnectionLost(SSHError):
    """An established SSH connection dropped."""

    code = "connection_lost"
