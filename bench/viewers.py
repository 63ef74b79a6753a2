"""The owner's throughput with a viewer that stalls, against none and against one that keeps up.

    .venv/bin/python -m bench.viewers [--size-mib 128] [--rounds 3]

Starts a real sshd and the real session server; the owner's shell runs `cat` of a base64 file
while (a) nobody watches, (b) a viewer joined and then never reads its socket or ACKs, and
(c) a viewer reads and ACKs everything. Rounds are interleaved, each in a rotated order so
that no case always follows another; medians and bests are kept, and the server's CPU per MiB.
Prints ratios (with viewer / alone) and writes JSON to bench/results/viewers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path
from typing import Any

from bench.bridge import RESULTS, bench_stack, timed_cat
from tests.fixtures_server import RunningServer
from tests.support import cpu_seconds
from tests.wsclient import TerminalClient, connected, viewing


class Watching(Enum):
    """Who else is attached while the owner's output flows."""

    ALONE = "alone"
    STALLED = "stalled_viewer"
    FOLLOWING = "following_viewer"


async def _follow(viewer: TerminalClient) -> None:
    """Read and ACK every frame until the socket closes."""
    with contextlib.suppress(Exception):
        while True:
            await viewer.receive_one()


@contextlib.asynccontextmanager
async def watched(
    server: RunningServer, owner: TerminalClient, how: Watching
) -> AsyncIterator[None]:
    """A viewer of the owner's session for the duration, stalled or following."""
    if how is Watching.ALONE:
        yield
        return
    viewer = await viewing(server, owner.view_id, keep_output=False, auto_ack=True)
    follower = asyncio.create_task(_follow(viewer)) if how is Watching.FOLLOWING else None
    try:
        yield  # a stalled viewer is simply never read again: its socket and window fill up
    finally:
        if follower is not None:
            follower.cancel()
        viewer.ws.transport.abort()


def mib(rate: float) -> float:
    """Bytes per second as MiB per second, rounded."""
    return round(rate / 2**20, 1)


async def owner_throughput(server: RunningServer, path: Path, how: Watching) -> float:
    owner = await connected(server, 200, 50, keep_output=False)
    async with watched(server, owner, how):
        rate = await timed_cat(owner, path)
    await owner.ws.close()
    return rate


async def run(size_mib: int, rounds: int) -> dict[str, Any]:
    with bench_stack(size_mib) as (_, server, payload):
        rates: dict[Watching, list[float]] = {how: [] for how in Watching}
        cpu: dict[Watching, float] = dict.fromkeys(Watching, 0.0)
        cases = list(Watching)
        for round_ in range(rounds):  # interleaved, so drifting load hits each case alike
            for how in cases[round_ % 3 :] + cases[: round_ % 3]:
                before = cpu_seconds(server.pid)
                rates[how].append(await owner_throughput(server, payload, how))
                cpu[how] += cpu_seconds(server.pid) - before
    best = {how: max(values) for how, values in rates.items()}
    median = {how: statistics.median(values) for how, values in rates.items()}
    return {
        "size_mib": size_mib,
        "rounds": rounds,
        "best_mib_s": {how.value: mib(v) for how, v in best.items()},
        "median_mib_s": {how.value: mib(v) for how, v in median.items()},
        "all_runs_mib_s": {how.value: [mib(v) for v in rates[how]] for how in rates},
        "server_cpu_ms_per_mib": {
            how.value: round(cpu[how] * 1000 / (size_mib * rounds), 2) for how in Watching
        },
        "ratio_median_stalled_vs_alone": round(
            median[Watching.STALLED] / median[Watching.ALONE], 3
        ),
        "ratio_median_following_vs_alone": round(
            median[Watching.FOLLOWING] / median[Watching.ALONE], 3
        ),
        "ratio_best_stalled_vs_alone": round(best[Watching.STALLED] / best[Watching.ALONE], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.size_mib, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "viewers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
