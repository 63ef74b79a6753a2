"""The target's files over SFTP on a session's own SSH connection: upload and download.

Whatever the SSH user may read or write, and nothing else: the target's SFTP server runs as
that user and decides. Paths go to it as given (relative ones are in the user's home); the
server follows symbolic links the way the target's kernel does for that user, and nothing
here resolves or checks them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import stat
from collections.abc import AsyncIterator
from typing import Any

import asyncssh

from app.transfer.errors import (
    FileExists,
    FileMissing,
    NoSpace,
    NotAFile,
    PermissionRefused,
    SftpUnavailable,
    TooLarge,
    TransferError,
)
from app.transfer.names import checked_path, temp_path, upload_target

log = logging.getLogger(__name__)

# Bytes per SFTP write or read call; asyncssh splits each into parallel requests of the
# server's preferred size, so a round trip is paid per block, not per 32 KiB.
BLOCK = 1024 * 1024


def _user_error(exc: BaseException, path: str) -> TransferError:
    """What to tell the user about an SFTP failure on `path`."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return FileMissing(f"{path}: no such file or directory on the target")
    if isinstance(exc, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
        return PermissionRefused(f"{path}: permission denied to the SSH user on the target")
    if isinstance(exc, asyncssh.SFTPFileAlreadyExists):
        return FileExists(f"{path} already exists")
    if isinstance(exc, asyncssh.SFTPFileIsADirectory | asyncssh.SFTPNotADirectory):
        return NotAFile(f"{path}: not a regular file")
    if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded):
        return NoSpace(f"{path}: no space left on the target (or the quota is reached)")
    if isinstance(exc, asyncssh.SFTPError):
        return TransferError(f"{path}: the target's SFTP server refused: {exc.reason}")
    if isinstance(exc, asyncssh.Error | OSError):
        return TransferError("the SSH connection to the target failed during the transfer")
    return TransferError(f"{path}: the transfer failed ({type(exc).__name__})")


async def _blocks(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """`body` regrouped into blocks of `size` bytes (the last may be shorter)."""
    pending = bytearray()
    async for chunk in body:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


class SFTPDownload:
    """A remote file open for reading; its SFTP session closes when the bytes are read."""

    def __init__(
        self, name: str, size: int, file: Any, stack: contextlib.AsyncExitStack, path: str
    ) -> None:
        self.name = name
        self.size = size
        self._file = file
        self._stack = stack
        self._path = path

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            offset = 0
            while offset < self.size:
                try:
                    data = await self._file.read(min(BLOCK, self.size - offset), offset)
                except (asyncssh.Error, OSError) as exc:
                    raise _user_error(exc, self._path) from None
                if not data:
                    log.warning("a file shrank while it was downloaded; the download is cut short")
                    return
                offset += len(data)
                yield data
        finally:
            await self.close()

    async def close(self) -> None:
        await self._stack.aclose()


class SFTPFiles:
    """Upload and download over SFTP channels of one SSH connection, one channel a transfer."""

    def __init__(self, conn: asyncssh.SSHClientConnection, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        try:
            async with asyncio.timeout(self._timeout):
                sftp = await self._conn.start_sftp_client()
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            log.info("SFTP could not start: %s", type(exc).__name__)
            raise SftpUnavailable(
                "the target offers no SFTP (its sshd needs a Subsystem sftp line)"
            ) from None
        try:
            yield sftp
        finally:
            sftp.exit()
            with contextlib.suppress(asyncssh.Error, OSError):
                await sftp.wait_closed()

    async def upload(
        self, path: str, body: AsyncIterator[bytes], *, overwrite: bool, limit: int
    ) -> str:
        """Write into a hidden file beside `path`, then rename it: whole or not at all."""
        directory, name = upload_target(path)
        async with self._client() as sftp:
            try:
                existing = await self._lstat(sftp, path)
                if existing is not None and stat.S_ISDIR(existing.permissions or 0):
                    raise NotAFile(f"{path} is a directory: end the path with the file's name")
                if existing is not None and not overwrite:
                    raise FileExists(f"{path} already exists on the target")
                temp = temp_path(directory, name)
                await self._write(sftp, temp, body)
                try:
                    if existing is not None and stat.S_ISREG(existing.permissions or 0):
                        await sftp.chmod(temp, stat.S_IMODE(existing.permissions or 0o644))
                    if existing is not None:
                        await sftp.posix_rename(temp, path)
                    else:
                        await sftp.rename(temp, path)  # refuses to replace what appeared since
                except BaseException:
                    with contextlib.suppress(asyncssh.Error, OSError):
                        await sftp.remove(temp)
                    raise
                landed: str = await sftp.realpath(path)
            except (asyncssh.Error, OSError) as exc:
                raise _user_error(exc, path) from None
        return landed

    async def _write(self, sftp: Any, temp: str, body: AsyncIterator[bytes]) -> None:
        """Stream `body` into a new file `temp`; remove it if anything goes wrong."""
        created = False
        try:
            async with sftp.open(temp, "xb") as file:
                created = True
                offset = 0
                async for block in _blocks(body, BLOCK):
                    await file.write(block, offset)
                    offset += len(block)
        except BaseException:
            if created:
                with contextlib.suppress(asyncssh.Error, OSError):
                    await sftp.remove(temp)
            raise

    @staticmethod
    async def _lstat(sftp: Any, path: str) -> Any:
        """The attributes of what is at `path` itself (a link is not followed), or None."""
        try:
            return await sftp.lstat(path)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return None

    async def download(self, path: str, limit: int) -> SFTPDownload:
        checked_path(path)
        stack = contextlib.AsyncExitStack()
        try:
            sftp = await stack.enter_async_context(self._client())
            try:
                # Refused before opening: opening a FIFO would block the SFTP server.
                attrs = await sftp.stat(path)
                if not stat.S_ISREG(attrs.permissions or 0):
                    raise NotAFile(f"{path} is not a regular file (a directory?)")
                file = await stack.enter_async_context(sftp.open(path, "rb"))
                size = (await file.stat()).size or 0
            except (asyncssh.Error, OSError) as exc:
                raise _user_error(exc, path) from None
            if size > limit:
                raise TooLarge(f"{path} has {size} bytes; this server sends at most {limit}")
            name = posixpath.basename(path.rstrip("/")) or "download"
            return SFTPDownload(name, size, file, stack, path)
        except BaseException:
            await stack.aclose()
            raise
