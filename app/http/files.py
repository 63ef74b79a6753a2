"""`P` + `files`: upload (PUT) and download (GET) a file of the target, by its session's owner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from app.errors import SessionNotFound
from app.http.middleware import NO_STORE
from app.http.state import ServerState, server_state
from app.metrics import Metrics
from app.terminal.ports import RemoteFiles
from app.terminal.session import Session
from app.transfer.errors import (
    ForeignOrigin,
    NotOwner,
    NotSignedIn,
    SessionGone,
    SessionRequired,
    ShuttingDown,
    TooLarge,
    TooSlow,
    TransferError,
    TransferOff,
)
from app.transfer.names import attachment, checked_path

log = logging.getLogger(__name__)

# The header that names the session: never the URL, which proxies log.
SESSION_HEADER = "EC2-Terminal-Session"
# Seconds an upload's body may pause before the upload is given up (and nothing written).
BODY_IDLE_TIMEOUT = 60


def _answer(error: TransferError) -> JSONResponse:
    body = {"error": str(error), "code": error.code}
    return JSONResponse(body, status_code=error.status, headers=NO_STORE)


def _owned_session(request: Request, state: ServerState) -> Session:
    """The session the request names, if its caller owns it; refuses everything else."""
    auth = state.auth
    if not auth.origin_ok(request.headers, request.url.scheme):
        log.warning("refused a file transfer from origin %r", request.headers.get("origin"))
        raise ForeignOrigin("requests from other origins are not allowed")
    caller = auth.caller(request.headers, request.cookies)
    if caller is None:
        raise NotSignedIn("authentication required")
    if state.draining:
        raise ShuttingDown("the terminal server is shutting down")
    session_id = request.headers.get(SESSION_HEADER, "")
    if not session_id:
        raise SessionRequired(f"name the session in the {SESSION_HEADER} header")
    try:
        session = state.registry.get(session_id)
    except SessionNotFound:
        raise SessionGone("that session has ended; files need a live session") from None
    if session.terminal is None or session.exit is not None:
        raise SessionGone("that session has ended; files need a live session")
    if session.owner != caller.identity:
        raise NotOwner("only the session's owner may transfer files (viewers may not)")
    return session


def _transfer(
    request: Request, state: ServerState, limit: int, way: str
) -> tuple[Session, RemoteFiles, str]:
    """The owned session, its files and the checked path of a transfer `way` (upload, download)."""
    session = _owned_session(request, state)
    if limit == 0:
        raise TransferOff(f"{way}s are turned off on this server")
    assert session.terminal is not None
    return session, session.terminal.files(), checked_path(request.query_params.get("path"))


class _Body:
    """An upload's body: refused beyond `limit` bytes or when it stalls; keeps the session alive."""

    def __init__(self, request: Request, session: Session, limit: int, metrics: Metrics) -> None:
        self.request = request
        self.session = session
        self.limit = limit
        self.received = 0
        self._counter = metrics.transfer_bytes.labels("upload")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        stream = self.request.stream().__aiter__()
        while True:
            try:
                async with asyncio.timeout(BODY_IDLE_TIMEOUT):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise TooSlow(f"the upload stalled for {BODY_IDLE_TIMEOUT} s") from None
            self.received += len(chunk)
            if self.received > self.limit:
                raise TooLarge(f"the file is larger than this server's limit of {self.limit} bytes")
            self._counter.inc(len(chunk))
            self.session.touch()  # a long upload is activity: the idle timeout must not end it
            yield chunk


async def upload(request: Request) -> Response:
    """PUT `P` + `files?path=...[&overwrite=1]`: the body becomes the file at `path`."""
    state = server_state(request.app)
    limit = state.settings.limits.max_upload_bytes
    try:
        session, files, path = _transfer(request, state, limit, "upload")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"the file has {declared} bytes; this server takes at most {limit}")
        overwrite = request.query_params.get("overwrite", "") in ("1", "true")
        body = _Body(request, session, limit, state.metrics)
        landed = await files.upload(path, aiter(body), overwrite=overwrite, limit=limit)
    except TransferError as exc:
        log.info("refused an upload: %s", exc)
        return _answer(exc)
    except ClientDisconnect:
        log.info("an upload ended early: the client went away; nothing was written")
        return Response(status_code=400, headers=NO_STORE)
    log.info("session %s: uploaded a file of %d bytes", session.id, body.received)
    return JSONResponse({"path": landed}, status_code=201, headers=NO_STORE)


async def download(request: Request) -> Response:
    """GET `P` + `files?path=...`: the file at `path`, as an attachment."""
    state = server_state(request.app)
    limit = state.settings.limits.max_download_bytes
    try:
        session, files, path = _transfer(request, state, limit, "download")
        remote = await files.download(path, limit)
    except TransferError as exc:
        log.info("refused a download: %s", exc)
        return _answer(exc)
    session.touch()
    log.info("session %s: downloading a file of %d bytes", session.id, remote.size)
    counter = state.metrics.transfer_bytes.labels("download")

    async def counted() -> AsyncIterator[bytes]:
        async for chunk in remote.chunks():
            counter.inc(len(chunk))
            yield chunk

    headers = {
        **NO_STORE,
        "Content-Disposition": attachment(path),
        "Content-Length": str(remote.size),
    }
    return StreamingResponse(
        counted(),
        media_type="application/octet-stream",
        headers=headers,
        background=BackgroundTask(remote.close),
    )
