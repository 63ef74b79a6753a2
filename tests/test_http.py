"""The HTTP surface: page, health, readiness, metrics, base path, and the demo command."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import CLI, env_without_proxies, poll, stop
from tests.wsclient import TerminalClient, connected

pytestmark = pytest.mark.anyio


def test_health_endpoints(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd)
    assert httpx.get(f"{server.origin}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.origin}/health-check/").json() == {"status": "ok"}
    assert httpx.get(f"{server.origin}/readyz").json() == {"status": "ready"}
    metrics = httpx.get(f"{server.origin}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "ec2_terminal_active_sessions",
        "ec2_terminal_bytes_total",
        "ec2_terminal_ssh_connect_seconds",
        "ec2_terminal_flow_control_stall_seconds_total",
        "ec2_terminal_errors_total",
    ):
        assert name in metrics.text


def test_readyz_names_what_is_missing(
    server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    server = server_factory(sshd, key_file=str(tmp_path / "absent"))
    ready = httpx.get(f"{server.origin}/readyz")
    assert ready.status_code == 503
    assert "absent" in ready.json()["reason"]
    assert httpx.get(f"{server.origin}/healthz").status_code == 200


def test_page_is_served_with_a_strict_policy(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd)
    page = httpx.get(server.base_url)
    assert page.status_code == 200
    assert "static/dist/terminal.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert httpx.get(f"{server.base_url}static/dist/terminal.js").status_code == 200


async def test_everything_moves_under_a_base_path(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, base_path="/t/demo/")
    assert server.base_url.endswith("/t/demo/")
    assert httpx.get(server.base_url).status_code == 200
    assert httpx.get(f"{server.base_url}static/dist/terminal.js").status_code == 200
    assert httpx.get(f"{server.base_url}healthz").status_code == 200
    assert httpx.get(f"{server.origin}/static/dist/terminal.js").status_code == 404
    assert server.log_in().status_code == 200
    client = await connected(server)
    await client.ws.close()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["--base-path", "no-slashes"],
            {},
            "base path 'no-slashes' must start and end with '/'",
            id="flag",
        ),
        pytest.param(
            ["--allowed-hosts", "term.example.com,https://x.test:443"],
            {},
            "allowed host 'https://x.test:443' must be a host name",
            id="allowed-hosts",
        ),
        pytest.param(
            ["--max-connections", "0", "--header-timeout", "0"],
            {},
            "max connections must be at least 1; the header timeout must be positive",
            id="connection-limits",
        ),
        pytest.param(
            ["--host", "example.test"],
            {"EC2_TERMINAL_HOST_KEY_POLICY": "bogus"},
            "argument --host-key-policy: 'bogus' is not one of known-hosts, fingerprint",
            id="environment-choice",
        ),
        pytest.param(
            ["--host", "example.test"],
            {"EC2_TERMINAL_PORT": "abc"},
            "argument --port: invalid int",
            id="environment-number",
        ),
        pytest.param(
            ["--host", "example.test"],
            {"EC2_TERMINAL_ACTIVITY_INTERVAL": "often"},
            "argument --activity-interval: invalid float value: 'often'",
            id="activity-interval-environment",
        ),
        pytest.param(
            ["--host", "example.test", "--activity-interval", "0"],
            {},
            "--activity-interval must be positive",
            id="activity-interval",
        ),
        pytest.param(
            ["--host", "example.test", "--forwarded-allow-ips", "10.0.0.0/8,proxy.local"],
            {},
            "forwarded-allow-ips entry 'proxy.local' must be an IP address, a network",
            id="forwarded-allow-ips",
        ),
        pytest.param(
            ["--host", "example.test"],
            {"EC2_TERMINAL_LOG_LEVEL": "loud"},
            "argument --log-level: 'loud' is not one of debug, info, warning, error",
            id="log-level-environment",
        ),
        pytest.param(
            ["--host", "example.test"],
            {"EC2_TERMINAL_CLIPBOARD_OSC52": "maybe"},
            "argument --clipboard-osc52: 'maybe' is not one of 1, true, yes, on, 0, false, no, off",
            id="clipboard-osc52-environment",
        ),
        pytest.param(
            ["--host", "example.test", "--max-recording-bytes", "100"],
            {},
            "--max-recording-bytes must be at least 4096",
            id="max-recording-bytes",
        ),
    ],
)
def test_configuration_errors_are_reported_plainly(
    args: list[str], env: dict[str, str], message: str
) -> None:
    """Bad flags and bad EC2_TERMINAL_* values alike: exit 2 and one plain line."""
    result = subprocess.run(
        [CLI, "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_proxies() | env,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli.main import build_parser
    from app.cli.serve import settings_from_args

    monkeypatch.setenv("EC2_TERMINAL_KEEPALIVE_INTERVAL", "7.5")
    settings = settings_from_args(build_parser().parse_args(["serve", "--host", "h"]))
    assert settings.limits.keepalive_interval == 7.5


def test_prototype_environment_variables_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli.main import build_parser
    from app.cli.serve import settings_from_args

    monkeypatch.setenv("AWS_HOSTNAME", "ec2-1-2-3-4.compute-1.amazonaws.com")
    monkeypatch.setenv("AWS_USERNAME", "ubuntu")
    settings = settings_from_args(build_parser().parse_args(["serve"]))
    assert settings.target.host == "ec2-1-2-3-4.compute-1.amazonaws.com"
    assert settings.target.user == "ubuntu"


async def test_demo_prints_a_link_that_serves_a_shell(tmp_path: Path) -> None:
    from websockets.asyncio.client import connect

    from app.terminal.protocol import SUBPROTOCOL
    from tests.wsclient import ws_url

    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [CLI, "demo", "--listen-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env_without_proxies() | {"SHELL": "/bin/sh"},
        )
    try:
        found = poll(
            lambda: re.search(r"(http://\S+/)#token=(\S+)", log.read_text()),
            timeout=30,
            what="the demo's link",
        )
        assert found is not None
        base, link = found.group(1), found.group(2)
        assert httpx.get(base).status_code == 200
        response = httpx.post(f"{base}login", json={"token": link})
        assert response.status_code == 200, response.text
        assert httpx.post(f"{base}login", json={"token": link}).status_code == 401, "one-off"
        assert "ec2-terminal link --url" in log.read_text()
        cookie = response.headers["set-cookie"].split(";")[0]
        ws = await connect(
            ws_url(base),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={"Cookie": cookie},
            origin=base.rstrip("/"),  # type: ignore[arg-type]
        )
        client = TerminalClient(ws)
        await client.hello(90, 20)
        await client.send_input("echo demo-$((6*7)); stty size\r")
        await client.until_text("20 90")
        assert "demo-42" in client.text
        await ws.close()
    finally:
        code = stop(demo, signal.SIGINT)
    assert code == 0, log.read_text()
    assert "stopped" in log.read_text()
