"""The workloads: each runs on one started peer and returns its figures."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from bench.bridge import percentile
from bench.peers import procs
from bench.peers.clients import Session, SessionClosed, open_session
from bench.peers.figures import Better, Figure
from bench.peers.servers import Target
from bench.peers.sizes import MIB, Sizes
from bench.peers.stream import PROMPT, Between, marker, read_until

#: How long one step may take before the trial counts as failed (not a measurement limit).
STEP_TIMEOUT = 60.0
#: A stream of output that delivers nothing for this long has stalled for good.
SILENCE_S = 30.0
#: Sessions opened at once by the idle workload (sshd's MaxStartups is 100).
OPEN_BATCH = 10
#: Seconds left for memory to settle after the idle workload opened sessions.
SETTLE_S = 2.0
#: Seconds between memory samples during a stall.
SAMPLE_S = 0.5
#: After a stall's last byte, how long the output stays quiet before memory is read again:
#: ec2-terminal gives its heap back once output has paused for 1 s (app/terminal/heap.py).
SETTLE_S = 3.0
KIB = 1024


class Workload(StrEnum):
    """The workloads, in the order a run takes them."""

    THROUGHPUT = "throughput"
    ECHO = "echo"
    CONNECT = "connect"
    STALL = "stall"
    IDLE = "idle"
    FLOOD = "flood"

    @property
    def slow(self) -> bool:
        """Long workloads run `slow_rounds` times, the others `rounds` times."""
        return self in (Workload.STALL, Workload.IDLE)


@dataclass(frozen=True)
class Payload:
    """The base64 file the output workloads print, and the hash of each prefix they check."""

    path: Path
    size: int
    #: sha256 of the first N bytes, by N.
    prefix_sha256: dict[int, str]


async def read_between(session: Session, scan: Between) -> None:
    """Feed output to `scan` until its END marker; TimeoutError after SILENCE_S without a byte."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(SILENCE_S) as deadline:
        while not scan.feed(await session.read()):
            deadline.reschedule(loop.time() + SILENCE_S)


def prefix_hashes(path: Path, sizes: list[int]) -> dict[int, str]:
    """sha256 of the first N bytes of `path` for each N, in one pass."""
    wanted = sorted(set(sizes))
    found: dict[int, str] = {}
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as source:
        for size in wanted:
            while done < size:
                chunk = source.read(min(MIB, size - done))
                if not chunk:
                    break
                digest.update(chunk)
                done += len(chunk)
            found[size] = digest.copy().hexdigest()
    return found


@dataclass
class Context:
    """What every workload gets besides its peer."""

    sizes: Sizes
    payload: Payload
    #: Extra data a workload keeps beside its figures (latencies, memory over time).
    details: dict[str, Any] = field(default_factory=dict)


async def ready_session(target: Target) -> Session:
    """A new session whose prompt has arrived."""
    session = await open_session(target)
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            await read_until(session, PROMPT)
    except BaseException:
        await session.close()
        raise
    return session


async def throughput(target: Target, ctx: Context) -> list[Figure]:
    """`cat` of the payload, timed from Enter until the marker printed after it arrives.

    A run whose session drops or whose bytes do not all arrive counts as not completed (its
    reason kept in the details) and has no speed.
    """
    size = ctx.sizes.payload_mib * MIB
    begin_cmd, begin = marker("BEGIN")
    done_cmd, done = marker("DONE")
    command = f"{begin_cmd}; head -c {size} {ctx.payload.path}; {done_cmd}\r"
    session = await ready_session(target)
    ctx.details["extensions"] = session.extensions
    scan = Between(begin + b"\r\n", done)
    try:
        before = target.usage()
        client_cpu = time.process_time()
        started = time.perf_counter()
        await session.send(command.encode())
        await read_between(session, scan)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        after = target.usage()
    except SessionClosed as exc:
        ctx.details["failure"] = f"session closed after {scan.count} of {size} bytes: {exc}"
        return [Figure("throughput: runs completed", 0.0, "yes", Better.HIGHER)]
    except TimeoutError:
        ctx.details["failure"] = f"output stopped for {SILENCE_S:.0f} s after {scan.count} bytes"
        return [Figure("throughput: runs completed", 0.0, "yes", Better.HIGHER)]
    finally:
        await session.close()
    if scan.count != size:
        ctx.details["failure"] = f"{scan.count} bytes arrived of {size}"
        return [Figure("throughput: runs completed", 0.0, "yes", Better.HIGHER)]
    server_cpu = after.cpu_s - before.cpu_s
    return [
        Figure("throughput: runs completed", 1.0, "yes", Better.HIGHER),
        Figure("throughput", size / MIB / elapsed, "MiB/s", Better.HIGHER),
        Figure("throughput: server CPU", server_cpu, "s", Better.LOWER),
        Figure(
            "throughput: server CPU per MiB", server_cpu * 1000 / (size / MIB), "ms", Better.LOWER
        ),
        Figure("throughput: client CPU / wall time", client_cpu / elapsed, "", Better.NONE),
        # What the transfer left behind: buffers that grew with it and were not given back.
        Figure(
            "throughput: server memory growth",
            (after.pss_kib - before.pss_kib) / KIB,
            "MiB",
            Better.LOWER,
        ),
    ]


async def echo(target: Target, ctx: Context) -> list[Figure]:
    """One key at a time into `cat > /dev/null`, timed until the terminal echoes it."""
    keys = ctx.sizes.keys
    session = await ready_session(target)
    latencies: list[float] = []
    try:
        async with asyncio.timeout(STEP_TIMEOUT + keys * 0.05):
            # Bash hands the terminal back (canonical, echoing) before it runs a line: a key
            # sent once READY is printed is echoed by the terminal, never swallowed by readline.
            ready_cmd, ready = marker("READY")
            await session.send(f"{ready_cmd}; cat > /dev/null\r".encode())
            await read_until(session, ready)
            await session.send(b"w")
            await read_until(session, b"w")
            before = target.usage()
            for index in range(keys):
                if index and index % 1000 == 0:
                    # A line ends before the terminal's line buffer (4 KiB) fills; not timed.
                    await session.send(b"\r")
                    await read_until(session, b"\n")
                started = time.perf_counter()
                await session.send(b"k")
                while b"k" not in await session.read():
                    pass
                latencies.append(time.perf_counter() - started)
            after = target.usage()
            await session.send(b"\x04")
    finally:
        await session.close()
    ctx.details["latencies_us"] = [round(v * 1e6, 1) for v in latencies]
    ms = 1000
    return [
        Figure("echo p50", statistics.median(latencies) * ms, "ms", Better.LOWER),
        Figure("echo p99", percentile(latencies, 99) * ms, "ms", Better.LOWER),
        Figure("echo p99.9", percentile(latencies, 99.9) * ms, "ms", Better.LOWER),
        Figure(
            "echo: server CPU per key",
            (after.cpu_s - before.cpu_s) * 1e6 / keys,
            "µs",
            Better.LOWER,
        ),
    ]


def _running(target: Target) -> int:
    """How many of the server's processes run (an exited child not yet reaped does not)."""
    return sum(1 for p in target.pids() if not procs.is_zombie(p))


async def _settled(target: Target, processes: int, wait_s: float) -> int:
    """Wait up to `wait_s` for the server to be back to `processes` processes; the excess."""
    deadline = time.monotonic() + wait_s
    while True:
        excess = _running(target) - processes
        if excess <= 0 or time.monotonic() >= deadline:
            return max(0, excess)
        await asyncio.sleep(0.05)


async def connect(target: Target, ctx: Context) -> list[Figure]:
    """From the page's first request for a session (token, form, socket) to the prompt."""
    times: list[float] = []
    idle_processes = _running(target)
    before = target.usage()
    for _ in range(ctx.sizes.connects):
        started = time.perf_counter()
        session = await ready_session(target)
        times.append(time.perf_counter() - started)
        await session.close()
        # Let the server end the session's processes, so their CPU is reaped into its own.
        await _settled(target, idle_processes, 2.0)
    left = await _settled(target, idle_processes, 5.0)
    after = target.usage()
    ms = 1000
    return [
        Figure("connect to prompt", statistics.median(times) * ms, "ms", Better.LOWER),
        Figure(
            "connect: server CPU per session",
            (after.cpu_s - before.cpu_s) * ms / len(times),
            "ms",
            Better.LOWER,
        ),
        Figure(
            "connect: processes left per closed session",
            left / len(times),
            "",
            Better.LOWER,
        ),
    ]


async def stall(target: Target, ctx: Context) -> list[Figure]:
    """Output flows while the client reads nothing for a while, then reads: is it all there?"""
    size = min(ctx.sizes.stall_mib * MIB, ctx.payload.size)
    begin_cmd, begin = marker("BEGIN")
    done_cmd, done = marker("DONE")
    alive_cmd, alive = marker("ALIVE")
    session = await ready_session(target)
    scan = Between(begin + b"\r\n", done, digest=True)
    series: list[dict[str, float]] = []
    survived = False
    try:
        before = target.usage()
        await session.send(f"{begin_cmd}; head -c {size} {ctx.payload.path}; {done_cmd}\r".encode())
        started = time.monotonic()
        # The client reads nothing: its socket buffers fill and the server must hold or drop.
        while (elapsed := time.monotonic() - started) < ctx.sizes.stall_s:
            now = target.usage()
            series.append(
                {"t": round(elapsed, 2), "pss_kib": now.pss_kib, "rss_kib": now.main_rss_kib}
            )
            await asyncio.sleep(SAMPLE_S)
        try:
            await read_between(session, scan)
            async with asyncio.timeout(STEP_TIMEOUT / 4):
                await session.send(f"{alive_cmd}\r".encode())
                await read_until(session, alive)
                survived = True
        except SessionClosed as exc:
            ctx.details["failure"] = f"session closed after {scan.count} of {size} bytes: {exc}"
        except TimeoutError:
            ctx.details["failure"] = f"output stopped after {scan.count} of {size} bytes"
        after = target.usage()
        series.append(
            {
                "t": round(time.monotonic() - started, 2),
                "pss_kib": after.pss_kib,
                "rss_kib": after.main_rss_kib,
            }
        )
        # The session stays open and quiet: what the server keeps, not what it just used.
        await asyncio.sleep(SETTLE_S)
        settled = target.usage()
    finally:
        await session.close()
    complete = (
        scan.done and scan.count == size and scan.hexdigest() == ctx.payload.prefix_sha256[size]
    )
    # The stall's own samples; the last one, taken after reading it all, is reported apart.
    peak = max(s["pss_kib"] for s in series[:-1])
    ctx.details["settled_pss_kib"] = settled.pss_kib
    ctx.details["memory_series"] = series
    ctx.details["received_bytes"] = scan.count
    ctx.details["reconnects"] = session.reconnects
    return [
        Figure("stall: session kept", float(survived), "yes", Better.HIGHER),
        Figure("stall: every byte delivered", float(complete), "yes", Better.HIGHER),
        Figure(
            "stall: server memory growth, peak while stalled",
            (peak - before.pss_kib) / KIB,
            "MiB",
            Better.LOWER,
        ),
        Figure(
            "stall: server memory growth once all was read",
            (after.pss_kib - before.pss_kib) / KIB,
            "MiB",
            Better.LOWER,
        ),
        Figure(
            f"stall: server memory growth {SETTLE_S:g} s later",
            (settled.pss_kib - before.pss_kib) / KIB,
            "MiB",
            Better.LOWER,
        ),
        Figure("stall: server CPU", after.cpu_s - before.cpu_s, "s", Better.LOWER),
        Figure("stall: sockets resumed by the client", float(session.reconnects), "", Better.NONE),
    ]


async def _drain(session: Session, dropped: list[Session]) -> None:
    """Keep an idle session's socket read (answering pings) until it ends."""
    with contextlib.suppress(SessionClosed):
        while True:
            await session.read()
    dropped.append(session)


async def idle(target: Target, ctx: Context) -> list[Figure]:
    """Server memory with 1, 50, 200 ... idle sessions open, against none."""
    await asyncio.sleep(SETTLE_S)
    base = target.usage()
    sessions: list[Session] = []
    drains: list[asyncio.Task[None]] = []
    dropped: list[Session] = []
    figures: list[Figure] = []
    try:
        for count in sorted(ctx.sizes.idle_counts):
            while len(sessions) < count:
                batch = min(OPEN_BATCH, count - len(sessions))
                opened = await asyncio.gather(*(ready_session(target) for _ in range(batch)))
                sessions.extend(opened)
                drains.extend(asyncio.create_task(_drain(s, dropped)) for s in opened)
            await asyncio.sleep(SETTLE_S)
            now = target.usage()
            figures.append(
                Figure(
                    f"idle: server memory, {count} sessions", now.pss_kib / KIB, "MiB", Better.LOWER
                )
            )
            figures.append(
                Figure(
                    f"idle: memory per session, {count} sessions",
                    (now.pss_kib - base.pss_kib) / count,
                    "KiB",
                    Better.LOWER,
                )
            )
        figures.append(Figure("idle: sessions dropped", float(len(dropped)), "", Better.LOWER))
    finally:
        for task in drains:
            task.cancel()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    figures.insert(
        0, Figure("idle: server memory, no session", base.pss_kib / KIB, "MiB", Better.LOWER)
    )
    return figures


WorkloadFunction = Callable[[Target, Context], Awaitable[list[Figure]]]

WORKLOADS: dict[Workload, WorkloadFunction] = {
    Workload.THROUGHPUT: throughput,
    Workload.ECHO: echo,
    Workload.CONNECT: connect,
    Workload.STALL: stall,
    Workload.IDLE: idle,
}
