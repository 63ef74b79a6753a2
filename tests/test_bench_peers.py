"""The peer benchmark's harness at tiny sizes: it runs every peer and workload and reports them.

Nothing here asserts a timing or a ratio (benchmarks report those, tests do not); only that each
trial ran, that the figures and files exist, and the pure parts of the bookkeeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from bench.peers.figures import Better, Figure
from bench.peers.report import Trial, summarize
from bench.peers.runner import Options, run, workload_peers
from bench.peers.servers import Peer
from bench.peers.sizes import QUICK
from bench.peers.stream import Between, marker
from bench.peers.workloads import Workload, prefix_hashes

TINY = dataclasses.replace(QUICK, keys=20, connects=1, stall_s=1.0, idle_counts=(1, 2))


def test_marker_command_never_matches_its_own_echo() -> None:
    command, expected = marker("DONE")
    assert expected == b"__DONE__42"
    assert expected not in command.encode()


@pytest.mark.parametrize("step", [1, 3, 7, 4096])
def test_between_counts_and_hashes_across_chunk_boundaries(step: int) -> None:
    payload = bytes(range(65, 91)) * 40
    stream = b"echo x\r\n__BEGIN__42\r\n" + payload + b"__DONE__42\r\ntest$ "
    scan = Between(b"__BEGIN__42\r\n", b"__DONE__42", digest=True)
    chunks = [stream[i : i + step] for i in range(0, len(stream), step)]
    finished = [scan.feed(chunk) for chunk in chunks]
    assert finished.index(True) == (stream.index(b"__DONE__42") + len(b"__DONE__42") - 1) // step
    assert scan.count == len(payload)
    assert scan.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_between_waits_for_the_begin_marker() -> None:
    scan = Between(b"<B>", b"<E>")
    assert not scan.feed(b"noise <E> more noise <")
    assert not scan.started
    assert scan.feed(b"B>abc<E>")
    assert scan.count == 3


def test_prefix_hashes(tmp_path: Path) -> None:
    path = tmp_path / "data"
    data = bytes(range(256)) * 8192
    path.write_bytes(data)
    found = prefix_hashes(path, [10, len(data), 5000])
    assert found == {n: hashlib.sha256(data[:n]).hexdigest() for n in (10, 5000, len(data))}


def _trial(peer: Peer, value: float, round_: int = 0) -> Trial:
    return Trial("throughput", peer, round_, [Figure("speed", value, "MiB/s", Better.HIGHER)])


def test_summary_ratios_to_ssh_and_to_the_best_competitor() -> None:
    trials = [
        _trial(Peer.SSH, 50),
        _trial(Peer.SSH, 70, 1),
        _trial(Peer.EC2_TERMINAL, 90),
        _trial(Peer.EC2_TERMINAL, 30, 1),
        _trial(Peer.EC2_TERMINAL, 60, 2),
        _trial(Peer.TTYD, 40),
        _trial(Peer.WEBSSH, 20),
    ]
    peers = [Peer.SSH, Peer.EC2_TERMINAL, Peer.TTYD, Peer.WEBSSH]
    (row,) = summarize(trials, peers)
    assert row.best is Peer.TTYD  # ec2-terminal and ssh -tt are not competitors
    ours = row.cells[Peer.EC2_TERMINAL]
    assert (ours.median, ours.low, ours.high, ours.n) == (60, 30, 90, 3)
    assert ours.ratio_ssh == pytest.approx(1.0)
    assert ours.ratio_best == pytest.approx(1.5)
    assert row.cells[Peer.WEBSSH].ratio_best == pytest.approx(0.5)
    assert row.cells[Peer.SSH].ratio_ssh is None


def test_lower_is_better_picks_the_smallest_competitor() -> None:
    trials = [
        Trial("echo", p, 0, [Figure("p50", v, "ms", Better.LOWER)])
        for p, v in ((Peer.SSH, 0.2), (Peer.EC2_TERMINAL, 0.3), (Peer.GOTTY, 0.4), (Peer.WETTY, 4))
    ]
    (row,) = summarize(trials, [Peer.SSH, Peer.EC2_TERMINAL, Peer.GOTTY, Peer.WETTY])
    assert row.best is Peer.GOTTY
    assert row.cells[Peer.EC2_TERMINAL].ratio_best == pytest.approx(0.75)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1200)  # the first run on a machine installs the peers (a Go build, npm)
def test_the_suite_runs_every_workload_on_every_peer(tmp_path: Path) -> None:
    options = Options(TINY, list(Peer), list(Workload), tmp_path)
    result = asyncio.run(run(options, say=lambda line: None))

    not_installed = {p: i["error"] for p, i in result["peers"].items() if "error" in i}
    assert not not_installed, f"peers that could not be installed: {not_installed}"
    errors = [f"{t['workload']}/{t['peer']}: {t['error']}" for t in result["trials"] if t["error"]]
    assert not errors, errors
    ran = {(t["workload"], t["peer"]) for t in result["trials"]}
    for workload in Workload:
        assert {(str(workload), str(p)) for p in workload_peers(workload)} <= ran

    figures = {row["figure"]: row for row in result["summary"]}
    for name in ("throughput: runs completed", "echo p50", "connect to prompt"):
        assert set(figures[name]["peers"]) == {str(p) for p in Peer}, name
    ours = {name: row["peers"].get(str(Peer.EC2_TERMINAL)) for name, row in figures.items()}
    # Behaviour, not speed: ec2-terminal completes the runs and keeps a stalled session whole.
    for name in (
        "throughput: runs completed",
        "stall: session kept",
        "stall: every byte delivered",
    ):
        cell = ours[name]
        assert cell is not None, name
        assert cell["median"] == 1.0, name
    throughput = ours["throughput"]
    assert throughput is not None
    assert throughput["ratio_ssh"] > 0
    assert ours["flood: page / parse alone"] is not None
    assert ours["start-up to ready"] is not None
    assert ours["idle: server memory, 2 sessions"] is not None

    echo_trials = [t for t in result["trials"] if t["workload"] == "echo"]
    assert all(len(t["details"]["latencies_us"]) == TINY.keys for t in echo_trials)
    assert json.loads((tmp_path / "peers.json").read_text())["summary"] == result["summary"]
    text = (tmp_path / "peers.md").read_text()
    assert "| echo p50 | ms |" in text
    assert "Load average" in text
    assert (tmp_path / "peers-echo.png").read_bytes().startswith(b"\x89PNG")
