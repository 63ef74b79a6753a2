"""What a file transfer can fail with: one class per answer, each with its code and HTTP status."""

from __future__ import annotations


class TransferError(Exception):
    """Root of every transfer failure shown to the user: `str(error)` is safe to show and log."""

    code: str = "transfer_failed"
    status: int = 502


class NotSignedIn(TransferError):
    """No login cookie and no bearer token, or one that is not valid."""

    code = "authentication_required"
    status = 401


class ForeignOrigin(TransferError):
    """A browser sent the request from another origin."""

    code = "foreign_origin"
    status = 403


class BadPath(TransferError):
    """The path is empty, too long, holds a NUL, or names no file to write."""

    code = "bad_path"
    status = 400


class SessionRequired(TransferError):
    """The request does not name its session (the `EC2-Terminal-Session` header)."""

    code = "session_required"
    status = 400


class SessionGone(TransferError):
    """The session named has ended, never existed, or is not connected."""

    code = "session_not_found"
    status = 404


class NotOwner(TransferError):
    """The caller is not the login that owns the session (a viewer, another browser)."""

    code = "not_owner"
    status = 403


class TransferOff(TransferError):
    """The server's limit for this direction is 0: transfers that way are off."""

    code = "transfer_disabled"
    status = 403


class FileMissing(TransferError):
    """No such file, or a directory on the way does not exist."""

    code = "file_not_found"
    status = 404


class PermissionRefused(TransferError):
    """The target refused the SSH user: not allowed to read or write there."""

    code = "permission_denied"
    status = 403


class NotAFile(TransferError):
    """The path is a directory or another kind of file that cannot be transferred."""

    code = "not_a_file"
    status = 409


class FileExists(TransferError):
    """An upload would replace a file, and the request did not ask to overwrite."""

    code = "file_exists"
    status = 409


class TooLarge(TransferError):
    """The file is larger than the server's limit for this direction."""

    code = "too_large"
    status = 413


class TooSlow(TransferError):
    """An upload's body stopped arriving."""

    code = "too_slow"
    status = 408


class NoSpace(TransferError):
    """The target's file system is full, or the user's quota is."""

    code = "no_space"
    status = 507


class SftpUnavailable(TransferError):
    """The target offers no SFTP subsystem (or refused to start it)."""

    code = "sftp_unavailable"
    status = 502


class ShuttingDown(TransferError):
    """The server is draining: no new transfers."""

    code = "shutting_down"
    status = 503
