"""The root of the user-facing errors and the terminal core's (SSH and AWS have their own)."""

from __future__ import annotations

from app.terminal.closecodes import CloseCode


class TerminalError(Exception):
    """Root of every error shown to the user: `str(error)` is safe to display and to log."""

    code: str = "internal_error"
    close_code: int = CloseCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolViolation(TerminalError):
    """The client sent a frame that breaks `ec2-terminal.v1`; its socket is closed."""

    code = "protocol_error"
    close_code = CloseCode.POLICY_VIOLATION


class FrameTooLarge(ProtocolViolation):
    """A client frame was larger than the limit."""

    code = "frame_too_large"
    close_code = CloseCode.MESSAGE_TOO_BIG


class TooManySessions(TerminalError):
    """The concurrent-session limit is reached; the client may try again later."""

    code = "too_many_sessions"
    close_code = CloseCode.TRY_AGAIN_LATER


class SessionNotFound(TerminalError):
    """A resume named a session that ended or never existed."""

    code = "session_not_found"
    close_code = CloseCode.POLICY_VIOLATION


class OutputLost(TerminalError):
    """A resume asked for output older than the replay buffer keeps."""

    code = "output_lost"
    close_code = CloseCode.POLICY_VIOLATION


class LoginEnded(TerminalError):
    """The credential a connection came with ended: logout, expiry, or a new access token."""

    code = "login_ended"
    close_code = CloseCode.POLICY_VIOLATION


class ConfigurationError(TerminalError):
    """The server's own settings are incomplete or contradictory."""

    code = "configuration_error"
