"""Pytest plugin: Debian's redis-server on its own port, and `ec2-terminal worker` processes.

Redis runs from a directory of its own with an append-only file fsynced on every write, so
a restart (``restart()``) keeps every queued message, as the chart's Redis does. Workers are
real Celery worker processes started from the console script, in their own process group
so that ``kill()`` takes the pool children down with the main process, as a node loss would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support import console_script, env_without_proxies, free_port, poll, port_open

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_PASSWORD = "test-redis-password-0123456789"
# Short limits, so redelivery after a lost worker happens within a test's patience.
FAST_WORKER_ENV = {
    "EC2_TERMINAL_HEALTH_CONNECT_TIMEOUT": "2",
    "EC2_TERMINAL_HEALTH_BANNER_TIMEOUT": "2",
    "EC2_TERMINAL_HEALTH_HTTP_TIMEOUT": "2",
    "EC2_TERMINAL_HEALTH_AWS_TIMEOUT": "3",
    "EC2_TERMINAL_HEALTH_SOFT_TIME_LIMIT": "8",
    "EC2_TERMINAL_HEALTH_TIME_LIMIT": "10",
    "EC2_TERMINAL_HEALTH_RETRY_BACKOFF_MAX": "2",
    "EC2_TERMINAL_HEALTH_VISIBILITY_TIMEOUT": "15",
    "EC2_TERMINAL_HEALTH_CHECK_EXPIRES": "120",
}


@dataclasses.dataclass
class RedisServer:
    """A redis-server process with a password, persisting to `directory`."""

    port: int
    directory: Path
    password: str = dataclasses.field(default=REDIS_PASSWORD, repr=False)
    process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    # Addresses it listens on besides loopback: pods on the real node reach the machine at the
    # node link's address, never at 127.0.0.1 (docs/realnode.md).
    also_bind: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The URL without the password (the worker reads that from a file or the environment)."""
        return self.url_at("127.0.0.1")

    def url_at(self, address: str) -> str:
        """The URL at one of the addresses it listens on, without the password."""
        return f"redis://{address}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        if os.path.exists(REDIS_SERVER) is False:
            pytest.fail(f"{REDIS_SERVER} is missing: run hack/setup (apt redis-server)")
        argv = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            " ".join(("127.0.0.1", *self.also_bind)),
            "--dir",
            str(self.directory),
            "--requirepass",
            self.password,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        poll(lambda: self.client().ping(), timeout=15, what=f"redis-server on {self.port}")

    def stop(self) -> None:
        """SIGTERM: redis flushes and exits, as a pod being replaced does."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        poll(lambda: not port_open(self.port), timeout=10, what="redis port closed")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server on a free port (never the system service)."""
    server = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def worker_env(
    redis_server: RedisServer, directory: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The worker's environment: Redis with its password in a file, fast limits, loopback."""
    password_file = directory / "redis-password"
    password_file.write_text(redis_server.password + "\n")
    env = env_without_proxies()
    env.update(FAST_WORKER_ENV)
    env.update(
        EC2_TERMINAL_REDIS_URL=redis_server.url,
        EC2_TERMINAL_REDIS_PASSWORD_FILE=str(password_file),
        EC2_TERMINAL_WORKER_LISTEN_HOST="127.0.0.1",
        EC2_TERMINAL_WORKER_CONCURRENCY="2",
        EC2_TERMINAL_BEAT_SCHEDULE_FILE=str(directory / "beat-schedule"),
    )
    env.update(extra or {})
    return env


@dataclasses.dataclass
class WorkerProcess:
    """An `ec2-terminal worker` process and its HTTP endpoints."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    # What it was started with beyond worker_env (to start another one like it).
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5, trust_env=False)

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics: metric("ec2_terminal_health_checks_total", 'result="ok"')."""
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        raise KeyError(wanted)

    def kill(self) -> None:
        """SIGKILL to the whole process group: no task finishes, nothing is acknowledged."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the main process only (as the kubelet does); waits for the warm shutdown."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Pool children left behind would keep consuming: take the whole group down.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def worker_factory(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFactory]:
    """Starts workers: `worker_factory(env={...}, args=[...])`; each is stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(
        env: Mapping[str, str] | None = None, args: list[str] | None = None, wait: bool = True
    ) -> WorkerProcess:
        directory = tmp_path_factory.mktemp("worker")
        port = free_port()
        full_env = worker_env(
            redis_server, directory, {"EC2_TERMINAL_WORKER_LISTEN_PORT": str(port)}
        )
        full_env.update(env or {})
        log_path = directory / "worker.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [console_script("ec2-terminal"), "worker", *(args or [])],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(proc, port, log_path, dict(env or {}))
        started.append(worker)
        if wait:

            def consuming() -> bool:
                assert proc.poll() is None, f"worker exited:\n{worker.log()}"
                return worker.get("/readyz").status_code == 200

            poll(consuming, timeout=30, what=f"worker consuming (log: {log_path})")
        return worker

    yield start
    for worker in started:
        worker.stop()
        assert REDIS_PASSWORD not in worker.log(), "the Redis password leaked into a worker log"


def run_command(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion (at most a minute) and captures its output as text."""
    return subprocess.run(
        argv, env=dict(env), capture_output=True, text=True, timeout=60, check=False
    )


# --- targets that are not a whole sshd: a silent port and a slow one ---


@dataclasses.dataclass
class FakeTarget:
    """A TCP port that accepts and then says nothing, or an SSH banner after a delay.

    Records when each connection started and ended, so tests can see overlaps.
    """

    port: int
    connections: list[tuple[float, float]] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def fake_target(banner_delay: float | None) -> Iterator[FakeTarget]:
    """A listener on 127.0.0.1: silent (None), or sending an SSH banner after `banner_delay`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    target = FakeTarget(port=listener.getsockname()[1])
    stopping = threading.Event()
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        began = time.monotonic()
        with conn:
            if banner_delay is None:
                while not stopping.is_set():
                    conn.settimeout(0.2)
                    try:
                        if conn.recv(1024) == b"":
                            break
                    except TimeoutError:
                        continue
                    except OSError:
                        break
            else:
                stopping.wait(banner_delay)
                with contextlib.suppress(OSError):
                    conn.sendall(b"SSH-2.0-SlowButAlive\r\n")
                    conn.settimeout(2)
                    conn.recv(1024)
        with lock:
            target.connections.append((began, time.monotonic()))

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        stopping.set()
        thread.join(5)
        listener.close()


def overlapping(spans: list[tuple[float, float]]) -> list[tuple[Any, Any]]:
    """Pairs of spans that overlap in time."""
    ordered = sorted(spans)
    return [(a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]
