"""HTTP and auth refusals as tables: credentials, Origin, one session's credentials on
another, path traversal, oversize headers, and the security headers of every answer.

What tests/test_security.py, test_login.py and test_connections.py already cover (no or
wrong token, the token in the URL, a foreign Origin, a cookie under another base path, a
used, expired or forged link, slowloris and the connection cap) is not repeated here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.terminal.protocol import SUBPROTOCOL
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import memory_kib
from tests.wsclient import connected, ws_url

pytestmark = pytest.mark.anyio


@dataclass
class Pair:
    """Two servers side by side, as two sessions on one host: other tokens, other base paths."""

    a: RunningServer
    b: RunningServer
    cookie_a: str
    cookie_b: str


@pytest.fixture
def pair(server_factory: ServerFactory, sshd: Sshd) -> Pair:
    # Relative to the server's directory: the token file sits one step above the recordings.
    a = server_factory(sshd, base_path="/t/ns/a/", recordings_dir="recordings")
    b = server_factory(sshd, base_path="/t/ns/b/")
    return Pair(a, b, a.cookie(), b.cookie())


def _same_length_wrong(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _tampered(cookie: str) -> str:
    name, value = cookie.split("=", 1)
    return f"{name}={_same_length_wrong(value)}"


# (name, headers for a WebSocket handshake to A, its status). Each builds from the pair.
Headers = Callable[[Pair], dict[str, str]]
HANDSHAKES: list[tuple[str, Headers, int]] = [
    (
        "wrong token, same length",
        lambda p: {"Authorization": f"Bearer {_same_length_wrong(p.a.token)}"},
        401,
    ),
    ("token cut short", lambda p: {"Authorization": f"Bearer {p.a.token[:-1]}"}, 401),
    ("token with a character more", lambda p: {"Authorization": f"Bearer {p.a.token}x"}, 401),
    ("token of 4 KiB", lambda p: {"Authorization": "Bearer " + "t" * 4096}, 401),
    ("empty bearer", lambda p: {"Authorization": "Bearer "}, 401),
    ("token as Basic credentials", lambda p: {"Authorization": f"Basic {p.a.token}"}, 401),
    ("B's token on A", lambda p: {"Authorization": f"Bearer {p.b.token}"}, 401),
    ("B's cookie on A", lambda p: {"Cookie": p.cookie_b, "Origin": p.a.origin}, 401),
    (
        "B's cookie renamed to A's",
        lambda p: {
            "Cookie": p.cookie_a.split("=")[0] + "=" + p.cookie_b.split("=")[1],
            "Origin": p.a.origin,
        },
        401,
    ),
    ("tampered cookie", lambda p: {"Cookie": _tampered(p.cookie_a), "Origin": p.a.origin}, 401),
    (
        "the token as the cookie",
        lambda p: {"Cookie": p.cookie_a.split("=")[0] + "=" + p.a.token, "Origin": p.a.origin},
        401,
    ),
    (
        "cookie, foreign Origin",
        lambda p: {"Cookie": p.cookie_a, "Origin": "https://evil.example"},
        403,
    ),
    ("cookie, Origin null", lambda p: {"Cookie": p.cookie_a, "Origin": "null"}, 403),
    ("cookie, no Origin", lambda p: {"Cookie": p.cookie_a}, 403),
    (
        "cookie, Origin on another port",
        lambda p: {"Cookie": p.cookie_a, "Origin": "http://127.0.0.1:1"},
        403,
    ),
    (
        "cookie, Origin with userinfo",
        lambda p: {"Cookie": p.cookie_a, "Origin": f"http://x@127.0.0.1:{p.a.port}"},
        403,
    ),
    (
        "bearer, Origin null",
        lambda p: {"Authorization": f"Bearer {p.a.token}", "Origin": "null"},
        403,
    ),
    ("cookie with Origin: accepted", lambda p: {"Cookie": p.cookie_a, "Origin": p.a.origin}, 101),
    ("bearer without Origin: accepted", lambda p: {"Authorization": f"Bearer {p.a.token}"}, 101),
]


async def handshake(server: RunningServer, headers: dict[str, str]) -> int:
    """The status of a WebSocket handshake with exactly these headers (Origin included)."""
    origin = headers.pop("Origin", None)
    try:
        ws = await connect(
            ws_url(server.base_url),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=10,
        )
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def test_websocket_handshakes(pair: Pair) -> None:
    got = {name: await handshake(pair.a, make(pair)) for name, make, _ in HANDSHAKES}
    assert got == {name: status for name, _, status in HANDSHAKES}
    assert pair.a.token not in pair.a.log()
    assert pair.b.token not in pair.a.log()


# The login exchange (POST P + login): what test_login.py does not already refuse.
LOGINS: list[tuple[str, Callable[[Pair], dict[str, object]], int]] = [
    ("B's token on A", lambda p: {"token": p.b.token}, 401),
    ("B's link on A", lambda p: {"token": p.b.link_token()}, 401),
    ("token cut short", lambda p: {"token": p.a.token[:-1]}, 401),
    ("token with a character more", lambda p: {"token": p.a.token + "x"}, 401),
    ("Origin null", lambda p: {"token": p.a.token, "origin": "null"}, 403),
    (
        "Origin of B's scheme and another port",
        lambda p: {"token": p.a.token, "origin": "http://127.0.0.1:1"},
        403,
    ),
]


def test_login_exchanges(pair: Pair) -> None:
    got = {}
    for name, make, _ in LOGINS:
        body = make(pair)
        origin = str(body.pop("origin", pair.a.origin))
        response = httpx.post(f"{pair.a.base_url}login", json=body, headers={"Origin": origin})
        assert "set-cookie" not in response.headers, name
        got[name] = response.status_code
    assert got == {name: status for name, _, status in LOGINS}


def raw_get(
    server: RunningServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET a path exactly as written (no client-side normalization); status and body."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


TRAVERSALS = [
    "recordings/../token",
    "recordings/..%2ftoken",
    "recordings/%2e%2e%2ftoken",
    "recordings/%2e%2e/token",
    "recordings/%252e%252e%252ftoken",
    "recordings/..%5ctoken",
    "recordings//etc/passwd",
    "recordings/%2fetc%2fpasswd",
    "recordings/%252fetc%252fpasswd",
    "static/../../token",
    "static/..%2f..%2f..%2ftoken",
    "static/%2e%2e/%2e%2e/%2e%2e/token",
    "static/%252e%252e/%252e%252e/token",
    "static/..%5c..%5ctoken",
    "static//etc/passwd",
    "static/%2fetc%2fpasswd",
    "static/../../../../../../etc/passwd",
    "static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "static/dist/..%2f..%2f..%2fhttp%2froutes.py",
    "static/dist/%2e%2e/%2e%2e/%2e%2e/http/routes.py",
]


def test_path_traversal_reaches_no_file_outside(pair: Pair) -> None:
    """Plain, encoded, double-encoded and absolute paths under recordings/ and static/."""
    server = pair.a
    # The token file sits beside the recordings directory, a step above it.
    assert (server.log_path.parent / "token").read_text().strip() == server.token
    auth = {"Authorization": f"Bearer {server.token}"}
    for path in TRAVERSALS:
        status, body = raw_get(server, server.base_path + path, auth)
        assert status in (400, 404), (path, status, body[:200])
        assert server.token.encode() not in body, path
        assert b"root:" not in body, path
        assert b"def " not in body, path
    assert "Traceback" not in server.log()


def peak_mib(server: RunningServer) -> float:
    return memory_kib(server.pid, "VmHWM") / 1024


def send_headers(server: RunningServer, headers: bytes) -> bytes:
    """Send a request with these header lines; what the server answered before closing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        try:
            for start in range(0, len(headers), 65536):
                sock.sendall(headers[start : start + 65536])
            sock.sendall(b"\r\n")
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:  # reset while we were still sending: the refusal came first
            answer += sock.recv(65536) if answer == b"" else b""
        return answer


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"X-Big: " + b"a" * 100 * 2**20 + b"\r\n", id="one-100-MiB-header"),
        pytest.param(b"X-Many: aaaaaaaaaa\r\n" * 200_000, id="200000-headers"),
        pytest.param(b"Cookie: " + b"c=1; " * 100_000 + b"\r\n", id="5-MB-cookie"),
    ],
)
def test_oversize_headers_are_refused_with_memory_bounded(
    server_factory: ServerFactory, sshd: Sshd, headers: bytes
) -> None:
    server = server_factory(sshd)
    before = peak_mib(server)
    started = time.monotonic()
    answer = send_headers(server, headers)
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert peak_mib(server) - before < 16, "the headers were buffered"
    assert took < 30
    assert httpx.get(f"{server.origin}/healthz").status_code == 200
    assert "Traceback" not in server.log()


def test_headers_just_under_the_limit_are_served(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd)
    response = httpx.get(f"{server.origin}/healthz", headers={"X-Fill": "a" * 60_000})
    assert response.status_code == 200


class _Scripts(HTMLParser):
    """Finds inline scripts and inline event handlers in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.inline += [f"{tag} {k}" for k in names if k.startswith("on")]
        self._in_script = tag == "script" and "src" not in names
        if self._in_script:
            self.inline.append("script without src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data.strip()[:40])


def check_security_headers(response: httpx.Response, what: str, no_store: bool) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {}
    for directive in filter(None, (d.strip() for d in csp.split(";"))):
        name, _, value = directive.partition(" ")
        directives[name] = value
    assert directives.get("frame-ancestors") == "'none'", what
    script = directives.get("script-src", directives.get("default-src", ""))
    assert script == "'self'", (what, script)
    # Style attributes are the one inline thing allowed (the DOM renderer's per-cell colours);
    # never inline script, eval, or a <style> element.
    assert directives.get("style-src-attr", "'unsafe-inline'") == "'unsafe-inline'", (what, csp)
    others = {k: v for k, v in directives.items() if k != "style-src-attr"}
    assert not [v for v in others.values() if "unsafe" in v], (what, csp)
    assert response.headers.get("referrer-policy") == "no-referrer", what
    assert response.headers.get("x-content-type-options") == "nosniff", what
    assert response.headers.get("x-frame-options") == "DENY", what
    if no_store:
        assert response.headers.get("cache-control") == "no-store", what


async def test_every_answer_carries_the_security_headers(pair: Pair) -> None:
    server = pair.a
    base = server.base_url
    bearer = {"Authorization": f"Bearer {server.token}"}
    cookie = {"Cookie": pair.cookie_a, "Origin": server.origin}
    client = await connected(server)
    await client.send_input("echo recorded\r")
    await client.until_text("recorded")
    await client.ws.close()
    listing = httpx.get(f"{base}recordings/", headers=bearer).json()["recordings"]
    assert listing, "a recording exists"
    name = listing[0]["name"] if isinstance(listing[0], dict) else listing[0]
    # (what, request, must it be no-store)
    requests: list[tuple[str, httpx.Request, bool]] = [
        ("page", httpx.Request("GET", base), True),
        ("page with ?token", httpx.Request("GET", f"{base}?token=x"), True),
        ("slash redirect", httpx.Request("GET", base.rstrip("/")), True),
        ("login status", httpx.Request("GET", f"{base}login", headers=cookie), True),
        (
            "login",
            httpx.Request(
                "POST",
                f"{base}login",
                json={"token": server.token},
                headers={"Origin": server.origin},
            ),
            True,
        ),
        ("login refused", httpx.Request("POST", f"{base}login", json={"token": "x"}), True),
        (
            "login foreign",
            httpx.Request(
                "POST", f"{base}login", json={"token": "x"}, headers={"Origin": "https://e.x"}
            ),
            True,
        ),
        (
            "login too large",
            httpx.Request("POST", f"{base}login", json={"token": "x" * 5000}),
            True,
        ),
        ("login wrong type", httpx.Request("POST", f"{base}login", content=b"x"), True),
        ("logout", httpx.Request("POST", f"{base}logout", headers={"Origin": server.origin}), True),
        ("recordings", httpx.Request("GET", f"{base}recordings/", headers=bearer), True),
        ("recording", httpx.Request("GET", f"{base}recordings/{name}", headers=bearer), True),
        (
            "recording missing",
            httpx.Request("GET", f"{base}recordings/x.cast", headers=bearer),
            True,
        ),
        ("recordings unauthenticated", httpx.Request("GET", f"{base}recordings/"), True),
        ("script", httpx.Request("GET", f"{base}static/dist/terminal.js"), False),
        ("stylesheet", httpx.Request("GET", f"{base}static/dist/terminal.css"), False),
        ("static missing", httpx.Request("GET", f"{base}static/nothing.js"), False),
        ("unknown path", httpx.Request("GET", f"{base}nothing"), False),
        ("wrong method", httpx.Request("DELETE", f"{base}login"), False),
        ("healthz", httpx.Request("GET", f"{server.origin}/healthz"), False),
        ("readyz", httpx.Request("GET", f"{server.origin}/readyz"), False),
        ("metrics", httpx.Request("GET", f"{server.origin}/metrics"), False),
        ("foreign host", httpx.Request("GET", base, headers={"Host": "evil.example"}), True),
        (
            "websocket refused",
            httpx.Request(
                "GET",
                f"{base}ws",
                headers={
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Protocol": SUBPROTOCOL,
                },
            ),
            True,
        ),
    ]
    statuses = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for what, request, no_store in requests:
            response = await http.send(request)
            statuses[what] = response.status_code
            check_security_headers(response, what, no_store)
    assert statuses["websocket refused"] == 401
    assert statuses["foreign host"] == 421
    page = _Scripts()
    page.feed(httpx.get(base).text)
    assert page.inline == [], "the page has inline script, which the CSP would block"
