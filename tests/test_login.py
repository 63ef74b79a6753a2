"""Logins: single-use link tokens and the access token traded for a server-side login cookie."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.terminal.protocol import SUBPROTOCOL
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import CLI, env_without_proxies, poll
from tests.wsclient import connected, connected_with_cookie, ws_url

pytestmark = pytest.mark.anyio


def replace_token_file(path: Path, token: str) -> None:
    """Swap in a new token file atomically, as the kubelet updates a mounted Secret."""
    replacement = path.with_name(path.name + ".new")
    replacement.write_text(token + "\n")
    replacement.replace(path)


async def refused_status(server: RunningServer, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            ws_url(server.base_url),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=headers,
            origin=server.origin,  # type: ignore[arg-type]
        )
    return refused.value.response.status_code


def cookie_of(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split(";", 1)[0]


async def test_a_link_logs_in_once_with_a_strict_cookie(server: RunningServer) -> None:
    link = server.link_token()
    # Opening the link (or a preview bot fetching it) only serves the page.
    page = httpx.get(f"{server.base_url}?token={link}")
    assert page.status_code == 200
    assert "set-cookie" not in page.headers

    response = server.log_in(link)
    assert response.status_code == 200, response.text
    assert response.json()["authenticated"] is True
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Max-Age=28800"):
        assert attribute in cookie
    assert "Path=" not in cookie, "scoped by the browser to the page's own directory"
    assert "Secure" not in cookie, "plain http: a Secure cookie is lost"
    assert server.token not in cookie
    assert link not in cookie

    client = await connected_with_cookie(server, cookie_of(response))
    await client.ws.close()
    status = httpx.get(f"{server.base_url}login", headers={"Cookie": cookie_of(response)})
    assert status.json()["authenticated"] is True
    assert 28700 < status.json()["expires_in"] <= 28800

    again = server.log_in(link)
    assert again.status_code == 401
    assert "already been used" in again.json()["error"]
    assert "set-cookie" not in again.headers
    assert "refused a link that was already used" in server.log()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda s: s.link_token(ttl=-1), "expired", id="expired"),
        pytest.param(lambda s: s.link_token(ttl=3600), "longer than", id="too-long-lived"),
        pytest.param(lambda s: s.link_token()[:-2] + "AA", "not valid", id="forged"),
        pytest.param(lambda s: "guess", "not valid", id="wrong-token"),
    ],
)
def test_bad_tokens_get_no_login(server: RunningServer, make: object, message: str) -> None:
    response = server.log_in(make(server))  # type: ignore[operator]
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert "set-cookie" not in response.headers


def test_a_link_for_another_base_path_is_refused(server_factory: ServerFactory, sshd: Sshd) -> None:
    a = server_factory(sshd, base_path="/t/ns/a/")
    b = server_factory(sshd, base_path="/t/ns/b/", token_file=str(a.log_path.parent / "token"))
    assert b.log_in(a.link_token()).status_code == 401
    assert b.log_in(a.token).status_code == 200, "one access token for both"


async def test_the_access_token_pasted_into_the_form_logs_in(server: RunningServer) -> None:
    form = httpx.post(
        f"{server.base_url}login",
        data={"token": server.token},
        headers={"Origin": server.origin},
    )
    assert form.status_code == 200
    client = await connected_with_cookie(server, cookie_of(form))
    await client.ws.close()


def test_login_requests_are_checked(server: RunningServer) -> None:
    foreign = server.log_in(Origin="https://evil.example")
    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers
    url = f"{server.base_url}login"
    plain = httpx.post(url, content=server.token, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    huge = httpx.post(url, json={"token": "x" * 5000})
    assert huge.status_code == 413
    assert httpx.post(url, json=["token"]).status_code == 400
    assert (
        httpx.post(
            url, content=b"[" * 3000, headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert httpx.get(url).json() == {"authenticated": False}


def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(server: RunningServer) -> None:
    # The test talks from 127.0.0.1, the default --forwarded-allow-ips.
    host = server.origin.removeprefix("http://")
    behind_tls = server.log_in(**{"X-Forwarded-Proto": "https", "Origin": f"https://{host}"})
    assert behind_tls.status_code == 200
    assert "Secure" in behind_tls.headers["set-cookie"]


async def test_logout_ends_the_login_and_its_connections(server: RunningServer) -> None:
    cookie = server.cookie()
    client = await connected_with_cookie(server, cookie)
    bystander = await connected_with_cookie(server, server.cookie())
    response = httpx.post(
        f"{server.base_url}logout", headers={"Cookie": cookie, "Origin": server.origin}
    )
    assert response.status_code == 204
    assert "Max-Age=0" in response.headers["set-cookie"]
    await client.until_closed()
    assert client.ws.close_code == 1008
    assert client.error == {"code": "login_ended", "message": "you logged out"}
    assert await refused_status(server, Cookie=cookie) == 401
    await bystander.send_input("echo still-here-$((2+2))\r")
    await bystander.until_text("still-here-4")
    await bystander.ws.close()


async def test_an_expired_login_closes_its_connections(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, login_ttl=2, token_check_interval=0.2)
    cookie = server.cookie()
    client = await connected_with_cookie(server, cookie)
    await client.until_closed(timeout=15)
    assert client.ws.close_code == 1008
    assert client.error is not None
    assert "login expired" in client.error["message"]
    assert await refused_status(server, Cookie=cookie) == 401


async def test_a_new_token_file_ends_every_login_link_and_connection(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, token_check_interval=0.2)
    old_token = server.token
    cookie = server.cookie()
    browser = await connected_with_cookie(server, cookie)
    script = await connected(server)
    unused_link = server.link_token()

    new_token = "rotated-" + os.urandom(16).hex()
    replace_token_file(server.log_path.parent / "token", new_token)

    for client in (browser, script):
        await client.until_closed(timeout=15)
        assert client.ws.close_code == 1008
        assert client.error is not None
        assert client.error["code"] == "login_ended"
        assert "access token was changed" in client.error["message"]
    assert await refused_status(server, Cookie=cookie) == 401
    assert await refused_status(server, Authorization=f"Bearer {old_token}") == 401
    assert server.log_in(unused_link).status_code == 401
    assert server.log_in(old_token).status_code == 401
    server.token = new_token
    assert server.log_in().status_code == 200, "links minted from the new token work"
    fresh = await connected(server)
    await fresh.ws.close()
    log = server.log()
    assert old_token not in log
    assert new_token not in log
    assert "the access token changed" in log


async def test_a_server_without_a_token_refuses_and_says_so(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, token_check_interval=0.2)
    replace_token_file(server.log_path.parent / "token", "")
    poll(
        lambda: httpx.get(f"{server.origin}/readyz").status_code == 503,
        what="/readyz to notice the empty token file",
    )
    assert "holds no token" in httpx.get(f"{server.origin}/readyz").json()["reason"]
    assert server.log_in(server.token).status_code == 503
    assert await refused_status(server, Authorization=f"Bearer {server.token}") == 401


def run_link(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "link", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_proxies() | env,
        check=False,
    )


def test_the_link_command_mints_links_the_server_accepts(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, base_path="/t/demo/")
    token_file = str(server.log_path.parent / "token")
    minted = run_link("--url", server.base_url, "--token-file", token_file)
    assert minted.returncode == 0, minted.stderr
    url, _, link = minted.stdout.strip().partition("#token=")
    assert url == server.base_url
    assert server.token not in minted.stdout
    assert server.log_in(link).status_code == 200

    # Inside the session pod: the token and base path come from the environment, and the URL
    # is the one a proxy serves (here with another prefix, which it strips).
    behind = run_link(
        "--url",
        "https://term.example.com/elsewhere",
        EC2_TERMINAL_TOKEN=server.token,
        EC2_TERMINAL_BASE_PATH="/t/demo/",
    )
    assert behind.returncode == 0, behind.stderr
    url, _, link = behind.stdout.strip().partition("#token=")
    assert url == "https://term.example.com/elsewhere/"
    assert server.log_in(link).status_code == 200

    query = run_link("--url", f"{server.base_url}?token=x", "--token-file", token_file)
    assert query.returncode == 2
    assert "must have no query" in query.stderr
    missing = run_link("--url", server.base_url)
    assert missing.returncode == 2
    assert "no access token" in missing.stderr


def test_link_tokens_bind_the_access_token_the_base_path_and_the_time() -> None:
    from app.auth import linktoken
    from app.auth.linktoken import LinkProblem, LinkRefused

    now = 1_800_000_000.0
    token = linktoken.mint("K", "/t/ns/a/", 300, now)
    assert linktoken.looks_like_link(token)
    link = linktoken.verify(token, "K", "/t/ns/a/", now, max_ttl=300)
    assert link.expiry == int(now) + 300
    for key, base, at, problem in (
        ("other", "/t/ns/a/", now, LinkProblem.INVALID),
        ("K", "/t/ns/b/", now, LinkProblem.INVALID),
        ("K", "/t/ns/a/", now + 300, LinkProblem.EXPIRED),
    ):
        with pytest.raises(LinkRefused) as refused:
            linktoken.verify(token, key, base, at, max_ttl=300)
        assert refused.value.problem is problem
    with pytest.raises(LinkRefused) as too_long:
        linktoken.verify(token, "K", "/t/ns/a/", now, max_ttl=100)
    assert too_long.value.problem is LinkProblem.TOO_LONG
    assert linktoken.verify(token, "K", "/t/ns/a/", now, max_ttl=250), "60 s of clock skew"
