"""Pytest plugin: the real session server (`ec2-terminal serve`) as a subprocess."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth import linktoken
from tests.fixtures_sshd import Sshd
from tests.support import CLI, env_without_proxies, free_port, poll, stop

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningServer:
    """A session server process and how to reach it."""

    base_url: str
    token: str = field(repr=False)
    port: int
    base_path: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        return stop(self.process)

    def issued(self, secret: str) -> str:
        """Note a credential the test used, for the end-of-run search of logs (secretscan)."""
        with (self.log_path.parent / "issued-secrets").open("a") as issued:
            issued.write(secret + "\n")
        return secret

    def link_token(self, ttl: float = 300) -> str:
        """A fresh single-use link token, as `ec2-terminal link` mints it."""
        return self.issued(linktoken.mint(self.token, self.base_path, ttl, time.time()))

    def link(self) -> str:
        """A fresh single-use link to the page: `base_url#token=<link token>`."""
        return f"{self.base_url}#token={self.link_token()}"

    def log_in(self, token: str | None = None, **headers: str) -> httpx.Response:
        """POST a token (default: a fresh link token) to `login`, as the page does."""
        return httpx.post(
            f"{self.base_url}login",
            json={"token": self.link_token() if token is None else token},
            headers={"Origin": self.origin, **headers},
            timeout=10,
        )

    def cookie(self) -> str:
        """`name=value` of a fresh login cookie."""
        response = self.log_in()
        assert response.status_code == 200, response.text
        cookie = response.headers["set-cookie"].split(";", 1)[0]
        self.issued(cookie.split("=", 1)[1])
        return cookie


def target_flags(sshd: Sshd) -> dict[str, str]:
    """Flags that point a server at `sshd` with its key and pinned known_hosts."""
    return {
        "host": sshd.host,
        "port": str(sshd.port),
        "user": sshd.user,
        "key-file": str(sshd.client_key_path),
        "host-key-policy": "known-hosts",
        "known-hosts": str(sshd.known_hosts_path),
    }


def start_server(
    directory: Path,
    sshd: Sshd | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    **flags: str | int | float,
) -> RunningServer:
    """Run `ec2-terminal serve` with its files in `directory`; flags use underscores for dashes."""
    token = secrets.token_urlsafe(24)
    token_file = directory / "token"
    token_file.write_text(token + "\n")
    port = free_port()
    options: dict[str, str] = target_flags(sshd) if sshd else {}
    options |= {"listen-port": str(port), "token-file": str(token_file)}
    options |= {k.replace("_", "-"): str(v) for k, v in flags.items()}
    port = int(options["listen-port"])  # a test may ask for a port (a restart on the same one)
    argv = [CLI, "serve"]
    for name, value in options.items():
        argv += [f"--{name}", value]
    log_path = directory / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env_without_proxies() | (env or {}),
        )
    base_path = options.get("base-path", "/")
    server = RunningServer(
        base_url=f"http://127.0.0.1:{port}{base_path}",
        token=token,
        port=port,
        base_path=base_path,
        log_path=log_path,
        process=process,
    )
    if wait:
        try:
            # A server that exited stops the wait at once; a slow start (a loaded machine
            # imports for seconds) is waited for generously.
            poll(
                lambda: (
                    process.poll() is not None
                    or httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                ),
                timeout=60,
                what=f"the session server to answer /healthz (log: {log_path})",
            )
        except TimeoutError:
            server.stop()
            raise
        if process.poll() is not None:
            server.stop()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the session server exited with {process.returncode}:\n{tail}")
    return server


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Starts servers: `server_factory(sshd, **flags)`, stopped after the test."""
    started: list[RunningServer] = []

    def start(sshd: Sshd | None = None, **kwargs: Any) -> RunningServer:
        server = start_server(tmp_path_factory.mktemp("server"), sshd, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        # A signal death (SIGPIPE from a reset socket, say) is a crash even if the test passed.
        died = server.process.poll()
        assert died is None or died >= 0, f"the server died of signal {-died}: {server.log()}"
        server.stop()
        assert server.token not in server.log(), "the access token leaked into the server log"


@pytest.fixture
def server(server_factory: ServerFactory, sshd: Sshd) -> RunningServer:
    """A session server in front of the default sshd."""
    return server_factory(sshd)
