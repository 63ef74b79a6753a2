"""The session server behind nginx under /t/demo/: page, assets and WebSocket through the proxy."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from app.terminal.protocol import SUBPROTOCOL
from tests.browser import TerminalPage, chromium
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import free_port, poll, port_open, stop
from tests.wsclient import TerminalClient, ws_url

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PREFIX = "/t/demo/"

# One server block; everything nginx writes stays in the test's own directory. The log format
# leaves out the query string: a token in a link's query must not land in the proxy's log either.
CONFIG = """\
{user}
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  log_format no_query '$remote_addr "$request_method $uri" $status $body_bytes_sent';
  access_log {dir}/access.log no_query;
  client_body_temp_path {dir}/tmp/client_body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  map $http_upgrade $connection_upgrade {{
    default upgrade;
    ""      close;
  }}
  server {{
    listen 127.0.0.1:{port};
    location {prefix} {{
      proxy_pass http://127.0.0.1:{upstream_port}{upstream_path};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass
class Nginx:
    """A running nginx in front of one session server."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + PREFIX

    def log(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")


NginxFactory = Callable[[RunningServer, bool], Nginx]


def write_config(directory: Path, port: int, upstream: RunningServer, strip: bool) -> Path:
    """nginx.conf proxying PREFIX to `upstream`; with `strip`, upstream paths lack PREFIX."""
    (directory / "tmp").mkdir()
    # As root nginx would run its worker as nobody, who cannot enter pytest's private temp dir.
    user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
    if strip:
        assert upstream.base_path == "/"
    else:
        assert upstream.base_path == PREFIX
    config = directory / "nginx.conf"
    config.write_text(
        CONFIG.format(
            user=user,
            dir=directory,
            port=port,
            prefix=PREFIX,
            upstream_port=upstream.port,
            upstream_path="/" if strip else "",
        )
    )
    return config


@pytest.fixture
def nginx_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxFactory]:
    """Starts nginx in front of a server: `nginx_factory(server, strip_prefix)`."""
    started: list[Nginx] = []

    def start(upstream: RunningServer, strip: bool) -> Nginx:
        directory = tmp_path_factory.mktemp("nginx")
        port = free_port()
        config = write_config(directory, port, upstream, strip)
        argv = [NGINX, "-e", str(directory / "error.log"), "-p", str(directory), "-c", str(config)]
        argv += ["-g", "daemon off;"]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nginx = Nginx(port, directory, process)
        started.append(nginx)
        poll(
            lambda: process.poll() is None and port_open(port),
            timeout=10,
            what=f"nginx to listen on {port} (log: {directory / 'error.log'})",
        )
        return nginx

    yield start
    for nginx in started:
        stop(nginx.process, timeout=10)


@pytest.fixture(params=["prefix-kept", "prefix-stripped"])
def proxied(
    request: pytest.FixtureRequest,
    server_factory: ServerFactory,
    nginx_factory: NginxFactory,
    sshd: Sshd,
) -> tuple[RunningServer, Nginx]:
    """A server behind nginx: at --base-path /t/demo/, or at / with nginx stripping /t/demo/."""
    strip = request.param == "prefix-stripped"
    server = server_factory(sshd, base_path="/" if strip else PREFIX)
    return server, nginx_factory(server, strip)


def cookie_from(response: httpx.Response) -> str:
    """The `name=value` of the cookie a login sets."""
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=strict" in header or "SameSite=Strict" in header
    return header.split(";", 1)[0]


@pytest.mark.anyio
async def test_page_assets_and_websocket_through_nginx(
    proxied: tuple[RunningServer, Nginx],
) -> None:
    server, nginx = proxied
    async with httpx.AsyncClient(base_url=nginx.origin, timeout=10) as http:
        bare = await http.get(PREFIX.rstrip("/"))
        assert bare.status_code == 301
        assert bare.headers["location"].endswith(PREFIX)

        login = await http.post(
            PREFIX + "login", json={"token": server.link_token()}, headers={"Origin": nginx.origin}
        )
        assert login.status_code == 200, login.text
        cookie = cookie_from(login)

        page = await http.get(PREFIX)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'src="static/dist/terminal.js"' in page.text

        script = await http.get(PREFIX + "static/dist/terminal.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert len(script.content) > 100_000
        style = await http.get(PREFIX + "static/dist/terminal.css")
        assert style.status_code == 200
        assert ".xterm" in style.text

    # Through nginx, the Origin the browser sends is nginx's, and nginx passes Host along.
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            ws_url(nginx.base_url),
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers={"Cookie": cookie},
            origin=Origin("http://elsewhere.example"),
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403

    ws = await connect(
        ws_url(nginx.base_url),
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        additional_headers={"Cookie": cookie},
        origin=Origin(nginx.origin),
        max_size=None,
        compression=None,
        open_timeout=10,
    )
    assert ws.subprotocol == SUBPROTOCOL
    client = TerminalClient(ws, keep_output=True)
    await client.hello(80, 24)
    await client.until_connected()
    await client.send_input("echo $((6*7))\r")
    await client.until(lambda c: "42\r\n" in c.text)
    await client.resize(100, 30)
    await client.send_input("stty size\r")
    await client.until_text("30 100")
    # A megabyte and more through the proxy, in order (the client checks every offset).
    await client.send_input("seq 1 150000; echo seq-$((1+1))-done\r")
    await client.until_text("seq-2-done", timeout=60)
    assert "\r\n149999\r\n150000\r\n" in client.text
    await client.send_input("exit 3\r")
    await client.until(lambda c: c.exit is not None)
    assert client.exit is not None
    assert client.exit["exit_status"] == 3
    await client.until_closed()
    assert ws.close_code == 1000

    access_log = (nginx.directory / "access.log").read_text()
    assert server.token not in access_log
    assert f"GET {PREFIX}static/dist/terminal.js" in access_log


@pytest.mark.browser
def test_browser_through_nginx(proxied: tuple[RunningServer, Nginx], sshd: Sshd) -> None:
    server, nginx = proxied
    with chromium() as browser:
        terminal = TerminalPage.open(browser, f"{nginx.base_url}#token={server.link_token()}")
        assert terminal.page.url == nginx.base_url, "the link token leaves the address bar"
        assert sshd.host_key_sha256 in terminal.page.locator("#host-key").inner_text()
        terminal.wait_prompt()
        terminal.run("echo $((6*7))")
        terminal.wait_line("42")
        terminal.page.set_viewport_size({"width": 700, "height": 400})
        terminal.page.wait_for_function("() => window.__ec2terminal.term.cols < 90")
        cols, rows = terminal.size()
        terminal.run("stty size")
        terminal.wait_line(f"{rows} {cols}")
        mode = "prefix-stripped" if server.base_path == "/" else "prefix-kept"
        terminal.screenshot(f"browser-nginx-{mode}.png")
        assert not terminal.errors
