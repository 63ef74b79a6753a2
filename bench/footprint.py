"""The session pod's footprint against a minimal asyncssh-plus-websockets bridge, side by side.

    .venv/bin/python -m bench.footprint [--rounds 5]

Starts the test sshd, then, round by round and alternating which goes first: the real session
server (`ec2-terminal serve`, a host target with a key, tracing off, as a session pod runs it)
and bench/minimal_bridge.py, each in a fresh process. For each: seconds from the process's
start until `/readyz` answers 200 and the CPU seconds it took, RSS once ready and idle, RSS
with one session that has logged in and run a command. Prints medians and ratios
(server / minimal) and writes bench/results/footprint.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.bridge import minimal_argv, save_result
from tests.fixtures_server import target_flags
from tests.fixtures_sshd import Sshd, start_sshd
from tests.support import CLI, cpu_seconds, env_without_proxies, free_port, memory_kib, stop
from tests.wsclient import open_client

# Printed after the command so the echoed command line cannot match it.
MARKER = "__FOOT$((6*7))__"
SEEN = "__FOOT42__"
# Lets lifespan tasks and the first GC settle before the idle figure is read.
SETTLE_SECONDS = 1.0

Session = Callable[[int, str], Awaitable[Any]]


def readyz(port: int) -> bool:
    """Whether /readyz answers 200 now."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def server_argv(sshd: Sshd, port: int, token_file: Path) -> list[str]:
    flags = target_flags(sshd) | {
        "listen-port": str(port),
        "token-file": str(token_file),
        "log-level": "warning",
    }
    return [CLI, "serve", *(arg for k, v in flags.items() for arg in (f"--{k}", v))]


async def server_session(port: int, token: str) -> Any:
    """A session of the real server: HELLO, the login shell, one command's output."""
    client = await open_client(f"http://127.0.0.1:{port}/", token)
    await client.hello()
    await client.until_connected()
    await client.send_input(f"echo {MARKER}\r")
    await client.until_text(SEEN)
    return client.ws


async def minimal_session(port: int, token: str) -> Any:
    """A session of the minimal bridge: the login shell, one command's output."""
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        open_timeout=10,
    )
    await ws.send(f"echo {MARKER}\r".encode())
    seen = b""
    async with asyncio.timeout(15):
        while SEEN.encode() not in seen:
            seen += await ws.recv(decode=False)
    return ws


def measure(
    argv: list[str], port: int, token: str, session: Session, cwd: Path
) -> dict[str, float]:
    """Start-up to /readyz, idle RSS and RSS with one session of one fresh process."""
    started = time.perf_counter()
    with (cwd / "process.log").open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env_without_proxies()
        )
    try:
        deadline = started + 60
        while not readyz(port):
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{argv[0]} never became ready (log: {cwd / 'process.log'})")
            time.sleep(0.005)
        startup = time.perf_counter() - started
        # Wall time to ready stretches with the machine's load; the CPU it took much less.
        startup_cpu = cpu_seconds(process.pid)
        time.sleep(SETTLE_SECONDS)
        idle = memory_kib(process.pid)

        async def one_session() -> int:
            ws = await session(port, token)
            await asyncio.sleep(SETTLE_SECONDS)
            rss = memory_kib(process.pid)
            await ws.close()
            return rss

        active = asyncio.run(one_session())
        return {
            "startup_s": startup,
            "startup_cpu_s": startup_cpu,
            "idle_rss_mib": idle / 1024,
            "one_session_rss_mib": active / 1024,
            "peak_rss_mib": memory_kib(process.pid, "VmHWM") / 1024,
        }
    finally:
        stop(process)


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ec2-terminal-footprint-") as tmp:
        work = Path(tmp)
        (work / "sshd").mkdir()
        sshd = start_sshd(work / "sshd")
        token = secrets.token_urlsafe(24)
        token_file = work / "token"
        token_file.write_text(token + "\n")
        sides: dict[str, tuple[Callable[[Sshd, int, Path], list[str]], Session]] = {
            "server": (server_argv, server_session),
            "minimal": (minimal_argv, minimal_session),
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        try:
            for index in range(rounds):
                # Alternate which goes first, so a warm page cache favours neither.
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                for name in order:
                    argv_of, session = sides[name]
                    port = free_port()
                    samples[name].append(
                        measure(argv_of(sshd, port, token_file), port, token, session, work)
                    )
        finally:
            stop(sshd.process)
    medians = {
        name: {key: round(statistics.median(s[key] for s in runs), 3) for key in runs[0]}
        for name, runs in samples.items()
    }
    spread = {
        name: {
            key: [round(min(s[key] for s in runs), 3), round(max(s[key] for s in runs), 3)]
            for key in runs[0]
        }
        for name, runs in samples.items()
    }
    ratios = {
        key: round(medians["server"][key] / medians["minimal"][key], 2) for key in medians["server"]
    }
    return {
        "rounds": rounds,
        "median": medians,
        "min_max": spread,
        "ratio_server_to_minimal": ratios,
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    save_result("footprint", run(args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
