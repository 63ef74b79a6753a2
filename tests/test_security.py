"""Refusals: tokens, cookies, Origin, malformed frames; none of them harms another session."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.terminal.protocol import SUBPROTOCOL, FrameType, encode, encode_ack
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.wsclient import connected, connected_with_cookie, open_client, ws_url

pytestmark = pytest.mark.anyio


async def handshake_status(server: RunningServer, **kwargs: object) -> int:
    """The HTTP status a refused WebSocket handshake got."""
    with pytest.raises(InvalidStatus) as refused:
        await open_client(server.base_url, **kwargs)  # type: ignore[arg-type]
    return refused.value.response.status_code


async def test_wrong_or_missing_token_is_refused(server: RunningServer) -> None:
    assert await handshake_status(server, token="not-the-token") == 401
    assert await handshake_status(server, token=None) == 401


async def test_refused_handshakes_log_no_errors(server: RunningServer) -> None:
    """A flood of unauthenticated upgrades must not bury real errors under ERROR lines."""
    for _ in range(200):
        assert await handshake_status(server, token=None) == 401
    assert await handshake_status(server, token=server.token, origin="https://evil.example") == 403
    log = server.log()
    assert " ERROR " not in log, log[-2000:]
    assert "Traceback" not in log


async def test_token_in_the_websocket_url_does_not_authenticate(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{ws_url(server.base_url)}?token={server.token}", subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
    assert refused.value.response.status_code == 401


async def test_foreign_origin_is_refused_even_with_the_token(server: RunningServer) -> None:
    status = await handshake_status(server, token=server.token, origin="https://evil.example")
    assert status == 403
    ok = await open_client(server.base_url, server.token, origin=server.origin)
    await ok.ws.close()


async def test_origin_must_match_the_scheme_too(server: RunningServer) -> None:
    host = server.origin.removeprefix("http://")
    status = await handshake_status(server, token=server.token, origin=f"https://{host}")
    assert status == 403, "an https page must not drive a server reached over plain http"
    # Behind a trusted TLS proxy it is the other way round.
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            ws_url(server.base_url),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={
                "Authorization": f"Bearer {server.token}",
                "X-Forwarded-Proto": "https",
            },
            origin=server.origin,  # type: ignore[arg-type]
        )
    assert refused.value.response.status_code == 403
    ok = await connect(
        ws_url(server.base_url),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={
            "Authorization": f"Bearer {server.token}",
            "X-Forwarded-Proto": "https",
        },
        origin=f"https://{host}",  # type: ignore[arg-type]
    )
    await ok.close()


async def test_a_cookie_works_only_under_the_base_path_that_set_it(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    """Sessions side by side on one host, even with one token: a's cookie is useless on b."""
    a = server_factory(sshd, base_path="/t/ns/a/")
    b = server_factory(sshd, base_path="/t/ns/b/", token_file=str(a.log_path.parent / "token"))
    cookie = a.cookie()
    assert b.log_in(a.token).status_code == 200, "one token for both"
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            ws_url(b.base_url),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={"Cookie": cookie},
            origin=b.origin,  # type: ignore[arg-type]
        )
    assert refused.value.response.status_code == 401
    listing = httpx.get(f"{b.base_url}recordings/", headers={"Cookie": cookie})
    assert listing.status_code == 401


async def test_missing_subprotocol_is_refused(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            ws_url(server.base_url),
            additional_headers={"Authorization": f"Bearer {server.token}"},
        )
    assert refused.value.response.status_code == 400


BAD_FRAMES = [
    pytest.param(b"", 1008, "empty frame", id="empty"),
    pytest.param(b"\x7fhello", 1008, "unknown frame type 0x7f", id="unknown-type"),
    pytest.param(b"\x80" + b"\x00" * 8, 1008, "sent by the server only", id="server-type"),
    pytest.param(encode(FrameType.RESIZE, b"\x00\x50"), 1008, "RESIZE payload", id="short-resize"),
    pytest.param(encode(FrameType.RESIZE, b"\x00\x00\x00\x18"), 1008, "1..1000", id="zero-cols"),
    pytest.param(encode_ack(10**12), 1008, "ACK of byte", id="ack-beyond-output"),
    pytest.param(encode(FrameType.ACK, b"\x01"), 1008, "ACK payload", id="short-ack"),
    pytest.param(encode(FrameType.HELLO, b"{}"), 1008, "only be the first", id="second-hello"),
    pytest.param(encode(FrameType.INPUT, b"x" * 70_000), 1009, "exceeds the limit", id="oversize"),
    pytest.param("text", 1008, "text frames", id="text-frame"),
]


@pytest.mark.parametrize(("frame", "code", "reason"), BAD_FRAMES)
async def test_bad_frames_close_only_their_own_socket(
    server: RunningServer, frame: bytes | str, code: int, reason: str
) -> None:
    bystander = await connected(server)

    offender = await connected(server)
    await offender.ws.send(frame)
    await offender.until_closed()
    assert offender.ws.close_code == code
    assert reason in (offender.ws.close_reason or "")
    assert offender.error is not None
    assert reason in offender.error["message"]

    await bystander.send_input("echo unharmed-$((5*5))\r")
    await bystander.until_text("unharmed-25")
    await bystander.ws.close()


async def test_a_huge_message_is_cut_off_by_the_websocket_layer(server: RunningServer) -> None:
    client = await connected(server)
    await client.ws.send(encode(FrameType.INPUT, b"x" * 300_000))
    await client.until_closed()
    assert client.ws.close_code == 1009
    assert client.error is None, "refused before the message was read whole: no ERROR frame"


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(encode(FrameType.INPUT, b"ls\r"), id="input-first"),
        pytest.param(encode(FrameType.HELLO, b"not json"), id="bad-json"),
        pytest.param(encode(FrameType.HELLO, b'{"cols": 0, "rows": 24}'), id="bad-size"),
        pytest.param(
            encode(FrameType.HELLO, b'{"cols": 80, "rows": 24, "resume": {"id": 5}}'),
            id="bad-resume",
        ),
    ],
)
async def test_a_bad_first_frame_is_refused(server: RunningServer, first: bytes) -> None:
    client = await open_client(server.base_url, server.token)
    await client.ws.send(first)
    await client.until_closed()
    assert client.ws.close_code == 1008
    assert client.error is not None
    assert client.error["code"] == "protocol_error"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "HELLO", id="deeply-nested"),
        pytest.param(b'{"cols": 80, "rows": ' + b"9" * 5000 + b"}", "HELLO", id="huge-integer"),
        pytest.param(
            b'{"cols": 80, "rows": 24, "pad": "' + b"x" * 5000 + b'"}', "HELLO", id="oversize"
        ),
    ],
)
async def test_hostile_hello_payloads_are_refused_without_a_traceback(
    server: RunningServer, payload: bytes, reason: str
) -> None:
    """Payloads that crash a JSON parser get 1008 and a reason, never a 1011 and a traceback."""
    client = await open_client(server.base_url, server.token)
    await client.ws.send(encode(FrameType.HELLO, payload))
    await client.until_closed()
    assert client.ws.close_code == 1008
    assert reason in (client.ws.close_reason or "")
    assert client.error is not None
    assert client.error["code"] == "protocol_error"
    bystander = await connected(server)
    await bystander.ws.close()
    assert "Traceback" not in server.log()
    assert " ERROR " not in server.log()


async def test_silent_client_is_closed_after_the_hello_timeout(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, hello_timeout=1)
    client = await open_client(server.base_url, server.token)
    await client.until_closed(timeout=20)
    assert client.ws.close_code == 1008
    assert "HELLO" in (client.ws.close_reason or "")


def test_log_filter_redacts_tokens_in_urls_and_headers() -> None:
    import logging

    from app.logs import RedactSecrets

    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '"%s" %s',
        ("GET /?token=s3cr3t&x=1", "ok"),
        None,
    )
    RedactSecrets().filter(record)
    assert "s3cr3t" not in record.getMessage()
    assert "token=[redacted]&x=1" in record.getMessage()
    header = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "Authorization: Bearer abc.def", None, None
    )
    RedactSecrets().filter(header)
    assert "abc.def" not in header.getMessage()
    for line in (
        "< cookie: ec2_terminal_auth_0123=s3cr3t",
        "Set-Cookie: ec2_terminal_auth_0123=s3cr3t; HttpOnly",
        'body {"token": "s3cr3t"}',
        "headers {'Cookie': 'x=1; ec2_terminal_auth_ab=s3cr3t'}",
    ):
        record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "%s", (line,), None)
        RedactSecrets().filter(record)
        assert "s3cr3t" not in record.getMessage(), line


UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol": SUBPROTOCOL,
}


def host_status(server: RunningServer, host: str, path: str, **headers: str) -> int:
    """The status of a GET of `path` with `Host: host` (DNS rebinding sends a foreign name)."""
    response = httpx.get(f"{server.origin}{path}", headers={"Host": host, **headers}, timeout=5)
    if response.status_code == 421:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    return response.status_code


PATHS = ["/metrics", "/readyz", "/healthz", "/t/demo/", "/t/demo/recordings/", "/t/demo/static/x"]


def test_foreign_host_names_are_refused_on_every_route(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    """DNS rebinding points a foreign name at this server: no route answers it."""
    server = server_factory(sshd, base_path="/t/demo/")
    auth = {"Authorization": f"Bearer {server.token}"}
    for path in PATHS:
        assert host_status(server, "rebound.example", path, **auth) == 421, path
    assert host_status(server, "rebound.example", "/t/demo/ws", **auth, **UPGRADE) == 421
    assert host_status(server, f"127.0.0.1:{server.port}", "/readyz") == 200


def test_only_configured_hosts_ip_literals_and_localhost_are_answered(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, base_path="/t/demo/", allowed_hosts="term.example.com,*.s.test")
    auth = {"Authorization": f"Bearer {server.token}"}
    for host in ("rebound.example", "s.test", "term.example.com.evil", "xn--80ak6aa92e.com", ""):
        for path in PATHS:
            assert host_status(server, host, path, **auth) == 421, (host, path)
        assert host_status(server, host, "/t/demo/ws", **auth, **UPGRADE) == 421
    port = server.port
    for host in (
        f"127.0.0.1:{port}",
        f"[::1]:{port}",
        f"localhost:{port}",
        "10.1.2.3",
        "term.example.com",
        "TERM.example.com:443",
        "a.s.test",
        "b.a.s.test.",
    ):
        assert host_status(server, host, "/readyz") == 200, host
    assert host_status(server, "term.example.com", "/t/demo/ws", **auth, **UPGRADE) == 101


def test_the_slash_redirect_is_relative_and_drops_the_query(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    """`P` without its slash: no absolute URL from the Host header, and no token carried on."""
    server = server_factory(sshd, base_path="/t/demo/")
    for path, location in (("/t/demo", "demo/"), ("/t/demo/recordings", "recordings/")):
        response = httpx.get(f"{server.origin}{path}?token={server.token}")
        assert response.is_redirect, path
        assert response.headers["location"] == location
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        target = httpx.URL(f"{server.origin}{path}").join(response.headers["location"])
        assert target.path == path + "/"


def hex_forms(text: str) -> list[str]:
    """`text` as the hex dumps of frames in debug logs may show it."""
    raw = text.encode()
    return [raw.hex(), raw.hex(" "), raw.hex(":")]


async def test_debug_logging_carries_no_credentials_and_no_terminal_data(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, log_level="debug")
    link = server.link_token()
    assert httpx.get(f"{server.base_url}?token={link}").status_code == 200
    login = server.log_in(link)
    cookie = login.headers["set-cookie"].split(";")[0]
    login_id = cookie.split("=", 1)[1]
    client = await connected_with_cookie(server, cookie)
    await client.send_input("echo typed-secret-$((40+2))-marker\r")
    await client.until_text("typed-secret-42-marker")
    await client.ws.close()
    bearer = await connected(server)
    await bearer.send_input("echo bearer-$((1+1))-secret\r")
    await bearer.until_text("bearer-2-secret")
    await bearer.ws.close()
    httpx.post(f"{server.base_url}logout", headers={"Cookie": cookie, "Origin": server.origin})

    log = server.log()
    assert " DEBUG " in log, "the server did log at debug"
    leaks = {
        "access token": [server.token],
        "link token": [link, link.split(".")[-1]],
        "login cookie": [login_id],
        # Frame dumps show a frame's first and last bytes: "echo " starts every typed line
        # and comes back in the output; "test$ " is the shell's prompt.
        "typed input": ["typed-secret", "bearer-$((", *hex_forms("echo ")],
        "terminal output": ["secret-42", "bearer-2", *hex_forms("test$ ")],
    }
    for what, forms in leaks.items():
        for form in forms:
            assert form not in log, f"the {what} ({form!r}) is in the debug log"
