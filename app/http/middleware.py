"""ASGI middleware around every route: the Host allow-list and the security headers."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

log = logging.getLogger(__name__)


def _policy(script_src: str, style_src_attr: str | None) -> str:
    directives = [
        "default-src 'self'",
        f"script-src {script_src}",
        "style-src 'self'",
        f"style-src-attr {style_src_attr}" if style_src_attr else None,
        "connect-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
    return "; ".join(d for d in directives if d)


# xterm.js's DOM renderer colors cells with style attributes (24-bit colors, minimum contrast):
# attributes only; <style> elements, eval() and inline script stay refused.
CONTENT_SECURITY_POLICY = _policy("'self'", style_src_attr="'unsafe-inline'")
# The recordings page: asciinema-player compiles its terminal emulator from WebAssembly, which
# needs 'wasm-unsafe-eval' (WebAssembly only; eval() and inline script stay refused). It sets
# styles through the CSSOM only, so it needs no style attributes.
PLAYER_CONTENT_SECURITY_POLICY = _policy("'self' 'wasm-unsafe-eval'", style_src_attr=None)
# On every response, including static files, refusals and errors.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# On responses that carry or depend on credentials, and on the page.
NO_STORE = {"Cache-Control": "no-store"}


def host_name(header: str) -> str | None:
    """The name or address of a Host header: lower case, no port, no final dot; None if bad."""
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, port = header[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        return name or None
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Host names the server answers: IP literals, localhost, and the configured names.

    DNS rebinding points an attacker's name at this server, so the browser lets the attacker's
    page read the answers; it needs a name, so addresses and localhost are always safe. A
    pattern `*.example.com` allows any name under example.com, not example.com itself.
    """

    allowed: tuple[str, ...] = ()

    def allows(self, header: str | None) -> bool:
        """Whether a request with this Host header may be answered."""
        name = host_name(header or "")
        if name is None:
            return False
        if name == "localhost" or _is_ip(name):
            return True
        for pattern in self.allowed:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]):
                    return True
            elif name == pattern:
                return True
        return False


class HostCheck:
    """Answers requests whose Host the policy refuses with 421, WebSocket upgrades included."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if self.policy.allows(host):
            await self.app(scope, receive, send)
            return
        log.info("refused a request for host %r (not in --allowed-hosts)", (host or "")[:100])
        response = PlainTextResponse(
            "This server does not answer for that host name.", status_code=421, headers=NO_STORE
        )
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:
            await response(scope, receive, send)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response and WebSocket denial that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
