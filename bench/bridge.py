"""Bridge against direct OpenSSH, side by side on loopback: throughput of `cat` and echo latency.

    .venv/bin/python -m bench.bridge [--size-mib 256] [--samples 300]

Starts a real sshd, the real session server and bench/minimal_bridge.py (asyncssh plus
websockets and nothing else: the floor of a Python bridge, for echo latency); prints ratios
(bridge / direct) and writes JSON to bench/results/bridge.json. Everything runs on 127.0.0.1
and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.fixtures_server import RunningServer, start_server
from tests.fixtures_sshd import Sshd, start_sshd
from tests.support import cpu_seconds, free_port, poll, stop
from tests.wsclient import TerminalClient, connected

END = b"<<END>>"
RESULTS = Path(__file__).parent / "results"
MINIMAL = Path(__file__).parent / "minimal_bridge.py"


@dataclass
class Minimal:
    """A running bench/minimal_bridge.py."""

    process: subprocess.Popen[bytes]
    port: int
    token: str


def minimal_argv(sshd: Sshd, port: int, token_file: Path) -> list[str]:
    return [
        sys.executable,
        str(MINIMAL),
        f"--listen-port={port}",
        f"--host={sshd.host}",
        f"--port={sshd.port}",
        f"--user={sshd.user}",
        f"--key-file={sshd.client_key_path}",
        f"--known-hosts={sshd.known_hosts_path}",
        f"--token-file={token_file}",
    ]


def start_minimal(sshd: Sshd, directory: Path) -> Minimal:
    """Start the minimal bridge against `sshd` and wait until it listens."""
    token = secrets.token_urlsafe(24)
    (directory / "token").write_text(token + "\n")
    port = free_port()
    process = subprocess.Popen(minimal_argv(sshd, port, directory / "token"))
    minimal = Minimal(process, port, token)

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the minimal bridge exited with {process.returncode}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        poll(listening, timeout=60, what="the minimal bridge to listen")
    except BaseException:
        stop(process)
        raise
    return minimal


@contextlib.contextmanager
def bench_stack(size_mib: int) -> Iterator[tuple[Sshd, RunningServer, Path]]:
    """The test sshd, the session server on it, and a base64 payload of `size_mib` MiB."""
    with tempfile.TemporaryDirectory(prefix="ec2-terminal-bench-") as tmp:
        work = Path(tmp)
        (work / "sshd").mkdir()
        (work / "server").mkdir()
        sshd = start_sshd(work / "sshd")
        server = start_server(work / "server", sshd, log_level="warning")
        try:
            yield sshd, server, make_payload(work, size_mib * 1024 * 1024)
        finally:
            server.stop()
            stop(sshd.process)


async def _minimal_echo(ws: ClientConnection, expected: bytes) -> bytes:
    """Output of the minimal bridge until it ends with `expected`."""
    seen = b""
    while not seen.endswith(expected):
        seen += await ws.recv(decode=False)
    return seen


async def minimal_latencies(minimal: Minimal, samples: int) -> list[float]:
    """Echo latency through the minimal bridge: binary frames in, binary frames out."""
    ws = await connect(
        f"ws://127.0.0.1:{minimal.port}/ws",
        additional_headers={"Authorization": f"Bearer {minimal.token}"},
        compression=None,
        open_timeout=30,
    )
    await ws.send(b"echo cat-$((6*7)); cat > /dev/null\r")
    async with asyncio.timeout(30):
        seen = b""
        while b"cat-42\r\n" not in seen:
            seen += await ws.recv(decode=False)
    # As in bridge_latencies: type until a keystroke's echo is the last thing shown.
    while True:
        await ws.send(b"w")
        try:
            async with asyncio.timeout(2):
                await _minimal_echo(ws, b"w")
            break
        except TimeoutError:
            continue
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await ws.send(b"k")
        echo = await asyncio.wait_for(ws.recv(decode=False), 10)
        times.append(time.perf_counter() - started)
        assert echo == b"k", echo
    await ws.close()
    return times


def ssh_argv(sshd: Sshd, *extra: str) -> list[str]:
    """Plain OpenSSH client options matching what the bridge verifies and offers."""
    return [
        "ssh",
        *extra,
        "-i",
        str(sshd.client_key_path),
        "-o",
        f"UserKnownHostsFile={sshd.known_hosts_path}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-F",
        "none",
        "-p",
        str(sshd.port),
        f"{sshd.user}@{sshd.host}",
    ]


def make_payload(directory: Path, size: int) -> Path:
    chunk = base64.b64encode(os.urandom(3 * 1024 * 1024))
    path = directory / "payload.b64"
    with path.open("wb") as out:
        written = 0
        while written < size:
            part = chunk[: size - written]
            out.write(part)
            written += len(part)
    return path


def children_cpu_seconds() -> float:
    """CPU time of every child process reaped so far (the `ssh` clients)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def direct_throughput(sshd: Sshd, path: Path, tty: bool) -> float:
    argv = ssh_argv(sshd, "-tt") if tty else ssh_argv(sshd)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        f"cat {path}",
        stdin=asyncio.subprocess.PIPE if tty else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    received = 0
    while chunk := await process.stdout.read(1 << 20):
        received += len(chunk)
    await process.wait()
    elapsed = time.perf_counter() - started
    assert received >= path.stat().st_size, f"direct ssh delivered {received} bytes"
    return path.stat().st_size / elapsed


async def bridge_throughput(server: RunningServer, path: Path) -> float:
    client = await connected(server, 200, 50, keep_output=False)
    rate = await timed_cat(client, path)
    await client.ws.close()
    return rate


async def timed_cat(client: TerminalClient, path: Path) -> float:
    """Bytes per second of `cat path` in a connected client's shell, timed to its end marker."""
    client.keep_output = True
    await client.send_input("stty -echo\r")
    await client.until(lambda c: b"stty -echo" in c.output)
    client.keep_output = False
    tail = bytearray()

    def done(c: TerminalClient) -> bool:
        return END in tail

    # Track only the last bytes: the payload itself is not kept.
    original = client.receive_one

    async def receive_tracking_tail() -> Any:
        before = client.offset
        kind = await original()
        if client.offset > before:
            tail.extend(client.last_chunk)
            del tail[: max(0, len(tail) - 64)]
        return kind

    client.receive_one = receive_tracking_tail  # type: ignore[method-assign]
    started = time.perf_counter()
    await client.send_input(f"cat {path}; printf '<<E''ND>>'\r")
    await client.until(done, timeout=600)
    elapsed = time.perf_counter() - started
    client.receive_one = original  # type: ignore[method-assign]
    return path.stat().st_size / elapsed


async def direct_latencies(sshd: Sshd, samples: int) -> list[float]:
    process = await asyncio.create_subprocess_exec(
        *ssh_argv(sshd, "-tt"),
        "cat > /dev/null",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    # Wait until the remote tty echoes, then time one keystroke at a time.
    process.stdin.write(b"w")
    await process.stdin.drain()
    await asyncio.wait_for(process.stdout.readexactly(1), 30)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        process.stdin.write(b"k")
        await process.stdin.drain()
        echo = await asyncio.wait_for(process.stdout.readexactly(1), 10)
        times.append(time.perf_counter() - started)
        assert echo == b"k"
    process.stdin.write(b"\x04")
    process.kill()
    await process.wait()
    return times


async def bridge_latencies(server: RunningServer, samples: int) -> list[float]:
    client = await connected(server, 200, 50, keep_output=False)
    client.keep_output = True
    # Typed before the shell reads its first line, the command is echoed by the terminal at once
    # and keystrokes that come while readline holds the terminal (echo off) are never echoed:
    # wait for what only the command's run prints.
    await client.send_input("echo cat-$((6*7)); cat > /dev/null\r")
    await client.until(lambda c: b"cat-42\r\n" in c.output)
    # The shell may still write (its bracketed-paste switch) after our first keystroke's echo,
    # and a keystroke sent before cat has the terminal gets no echo: type until a keystroke's
    # echo is the last thing shown.
    while True:
        await client.send_input("w")
        try:
            await client.until(lambda c: c.output.endswith(b"w"), timeout=2)
            break
        except TimeoutError:
            continue
    times = []
    # The echo has arrived when its OUTPUT frame is read; the ACK for it is sent after the
    # clock stops, as the page ACKs after rendering (the server still handles one per key).
    client.auto_ack = False
    for _ in range(samples):
        before = client.offset
        started = time.perf_counter()
        await client.send_input("k")
        await client.until(lambda c, before=before: c.offset > before)  # type: ignore[misc]
        times.append(time.perf_counter() - started)
        await client.ack()
    await client.ws.close()
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(size_mib: int, samples: int, rounds: int) -> dict[str, Any]:
    with bench_stack(size_mib) as (sshd, server, payload):
        # A directory of its own: the server's holds the server's token file.
        directory = server.log_path.parent.parent / "minimal"
        directory.mkdir()
        minimal = start_minimal(sshd, directory)
        try:
            return await _run(sshd, server, minimal, payload, size_mib, samples, rounds)
        finally:
            stop(minimal.process)


async def _run(
    sshd: Sshd,
    server: RunningServer,
    minimal: Minimal,
    payload: Path,
    size_mib: int,
    samples: int,
    rounds: int,
) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"direct": [], "direct_tty": [], "bridge": []}
    # CPU spent per MiB by what sits between the SSH server and the reader: the
    # `ssh -tt` client on one side, the session server on the other.
    cpu = {"direct_tty": 0.0, "bridge": 0.0}
    # Interleave the runs so drifting machine load hits each side alike.
    for _ in range(rounds):
        rates["direct"].append(await direct_throughput(sshd, payload, tty=False))
        before = children_cpu_seconds()
        rates["direct_tty"].append(await direct_throughput(sshd, payload, tty=True))
        cpu["direct_tty"] += children_cpu_seconds() - before
        before = cpu_seconds(server.pid)
        rates["bridge"].append(await bridge_throughput(server, payload))
        cpu["bridge"] += cpu_seconds(server.pid) - before
    # Echo, interleaved too, in a rotated order: `ssh -tt`, the minimal bridge (the floor of
    # asyncssh plus websockets) and the session server; server CPU per key includes a connect.
    latencies: dict[str, list[float]] = {"direct": [], "minimal": [], "bridge": []}
    round_p50: dict[str, list[float]] = {name: [] for name in latencies}
    key_cpu = {"minimal": 0.0, "bridge": 0.0}
    pids = {"minimal": minimal.process.pid, "bridge": server.pid}
    measure = {
        "direct": lambda: direct_latencies(sshd, samples),
        "minimal": lambda: minimal_latencies(minimal, samples),
        "bridge": lambda: bridge_latencies(server, samples),
    }
    order = list(measure)
    for index in range(rounds):
        for name in order[index % 3 :] + order[: index % 3]:
            before = cpu_seconds(pids[name]) if name in pids else 0.0
            got = await measure[name]()
            if name in pids:
                key_cpu[name] += cpu_seconds(pids[name]) - before
            latencies[name] += got
            round_p50[name].append(round(statistics.median(got) * 1000, 3))
    best = {k: max(v) for k, v in rates.items()}
    p50 = {k: statistics.median(v) for k, v in latencies.items()}
    return {
        "size_mib": size_mib,
        "rounds": rounds,
        "samples_per_round": samples,
        "throughput_mib_s": {k: round(v / 2**20, 1) for k, v in best.items()},
        "throughput_ratio_vs_ssh": round(best["bridge"] / best["direct"], 3),
        "throughput_ratio_vs_ssh_tt": round(best["bridge"] / best["direct_tty"], 3),
        "cpu_ms_per_mib": {k: round(v * 1000 / (size_mib * rounds), 2) for k, v in cpu.items()},
        "latency_ms": {
            **{f"{k}_p50": round(v * 1000, 3) for k, v in p50.items()},
            **{f"{k}_p99": round(percentile(v, 99) * 1000, 3) for k, v in latencies.items()},
        },
        "latency_p50_per_round_ms": round_p50,
        "latency_ratio_p50": round(p50["bridge"] / p50["direct"], 3),
        "latency_ratio_p99": round(
            percentile(latencies["bridge"], 99) / percentile(latencies["direct"], 99), 3
        ),
        "minimal_latency_ratio_p50": round(p50["minimal"] / p50["direct"], 3),
        "latency_ratio_p50_vs_minimal": round(p50["bridge"] / p50["minimal"], 3),
        "echo_cpu_us_per_key": {
            k: round(v * 1e6 / (samples * rounds), 1) for k, v in key_cpu.items()
        },
    }


def save_result(name: str, result: dict[str, Any]) -> None:
    """Writes bench/results/NAME.json and prints it."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    save_result("bridge", asyncio.run(run(args.size_mib, args.samples, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
