"""The least HTTPS client the session pod needs for its Lease reports: one request per connection.

The server sends one small PATCH every few seconds at most; httpx would add about 0.5 s and
several MiB to every session pod's start (it imports click, rich and pygments when they are
installed), so this is asyncio streams and HTTP/1.0: no chunked bodies, the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import ssl
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any

# Far above a Lease or an API error (a few KiB), so a misbehaving peer cannot fill memory.
MAX_RESPONSE_BYTES = 1 << 20


class ApiResponseError(OSError):
    """The API server's answer could not be read as HTTP."""


@dataclasses.dataclass(frozen=True)
class ApiResponse:
    """Status and body of one answer."""

    status_code: int
    reason_phrase: str
    content: bytes

    def json(self) -> Any:
        """The body as JSON (ValueError if it is not)."""
        return json.loads(self.content)


def parse_response(raw: bytes) -> ApiResponse:
    """An HTTP/1.x response read to its end (the connection closed)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ApiResponseError(f"not an HTTP response: {status_line[:60]!r}")
    return ApiResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", body)


class ApiClient:
    """Requests to one API server over TLS that trusts `ca_file` only (or the system CAs)."""

    def __init__(self, ca_file: str | None = None, timeout: float = 10.0) -> None:
        # Made once: loading the CA bundle is the costly part of a TLS client.
        self._context = ssl.create_default_context(cafile=ca_file)
        self._timeout = timeout

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def patch(self, url: str, *, content: str, headers: Mapping[str, str]) -> ApiResponse:
        """PATCH `content` to `url`; TimeoutError after the client's timeout."""
        async with asyncio.timeout(self._timeout):
            return await self._request("PATCH", url, content.encode(), headers)

    async def _request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> ApiResponse:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None:
            raise ApiResponseError(f"no host in {url!r}")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=self._context if secure else None
        )
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            host = parts.netloc.rpartition("@")[2]
            lines = [f"{method} {target} HTTP/1.0", f"Host: {host}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            raw = bytearray()
            while chunk := await reader.read(65536):
                raw += chunk
                if len(raw) > MAX_RESPONSE_BYTES:
                    raise ApiResponseError("response too large")
            return parse_response(bytes(raw))
        finally:
            writer.close()
            # A TLS peer may close without close_notify; the answer is read by then.
            with contextlib.suppress(OSError):
                await writer.wait_closed()
