"""A run: install the peers, start the sshd, interleave every workload over the peers, report."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.bridge import make_payload
from bench.peers import install, machine, plot, procs, report
from bench.peers.figures import Better, Figure
from bench.peers.flood import flood
from bench.peers.report import Trial
from bench.peers.servers import SETTINGS, Peer, Target, start
from bench.peers.sizes import MIB, Sizes
from bench.peers.workloads import WORKLOADS, Context, Payload, Workload, prefix_hashes
from tests.fixtures_sshd import Sshd, start_sshd
from tests.support import stop

ALL_WORKLOADS: dict[Workload, Any] = {**WORKLOADS, Workload.FLOOD: flood}
KIB = 1024
#: How a result records when its run started.
STARTED = "%Y-%m-%d %H:%M UTC"


@dataclass(frozen=True)
class Options:
    """What to run and where to write the results."""

    sizes: Sizes
    peers: list[Peer]
    workloads: list[Workload]
    out: Path
    #: Per-trial limit on top of each step's own, so one hung peer cannot stall the run.
    trial_timeout: float = 900.0
    #: A saved run to summarize again instead of running (`--render`).
    saved: Path | None = None


def _startup_figures(target: Target) -> list[Figure]:
    """What every trial learns for free from starting its server: time to ready, memory then."""
    if target.peer is Peer.SSH:
        return []
    usage = target.usage()
    return [
        Figure("start-up to ready", target.startup_s * 1000, "ms", Better.LOWER),
        # Wall time to ready stretches with the machine's load (2 to 16 s for the same server
        # on a loaded 2-core VM); the CPU it took does not.
        Figure("start-up: server CPU", usage.cpu_s * 1000, "ms", Better.LOWER),
        Figure("server memory when ready (PSS)", usage.pss_kib / KIB, "MiB", Better.LOWER),
        Figure("server RSS when ready", usage.main_rss_kib / KIB, "MiB", Better.LOWER),
    ]


async def _trial(
    workload: Workload,
    peer: Peer,
    round_: int,
    sshd: Sshd,
    installed: dict[str, install.Installed],
    payload: Payload,
    options: Options,
    work: Path,
) -> Trial:
    trial = Trial(str(workload), peer, round_)
    directory = work / f"{workload}-{peer.name.lower()}-{round_}"
    try:
        target = await asyncio.to_thread(start, peer, sshd, installed, directory)
    except Exception as exc:
        trial.error = f"start failed: {exc}"
        return trial
    ctx = Context(options.sizes, payload)
    try:
        trial.figures = _startup_figures(target)
        async with asyncio.timeout(options.trial_timeout):
            trial.figures += await ALL_WORKLOADS[workload](target, ctx)
        if not target.alive():
            trial.error = f"the server exited: {target.log()}"
    except Exception as exc:
        trial.error = f"{type(exc).__name__}: {exc}".strip()
        log = target.log().strip()
        if log:
            trial.error += f" (server log ends: {log[-300:]!r})"
    finally:
        await asyncio.to_thread(target.stop)
        # Whatever the server left behind (sessions it did not end) ends with its trial.
        orphans = target.orphans()
        if orphans:
            trial.details["orphans_ended"] = len(orphans)
            await asyncio.to_thread(procs.end, orphans)
        shutil.rmtree(directory, ignore_errors=True)
    trial.details = ctx.details
    return trial


def workload_peers(workload: Workload) -> list[Peer]:
    """The peers a workload runs on."""
    if workload is Workload.FLOOD:
        return [Peer.EC2_TERMINAL]  # the peers' pages are not driven in Chromium
    if workload is Workload.STALL:
        # ttyd drops a socket that misses its pings whatever the client offered; once is enough.
        return [p for p in Peer if p is not Peer.TTYD_PLAIN]
    return list(Peer)


def _plan(options: Options, available: list[Peer]) -> list[tuple[Workload, int, Peer]]:
    """Every trial in order: per workload, round after round, each round over all peers."""
    plan = []
    for workload in options.workloads:
        peers = [p for p in available if p in workload_peers(workload)]
        rounds = options.sizes.slow_rounds if workload.slow else options.sizes.rounds
        plan += [(workload, r, p) for r in range(rounds) for p in peers]
    return plan


def _headline(trial: Trial) -> str:
    if trial.error:
        return f"FAILED: {trial.error[:200]}"
    shown = [f for f in trial.figures if not f.name.startswith(("start-up", "server "))][:4]
    text = ", ".join(f"{f.name} {report.fmt(f.value)} {f.unit}".strip() for f in shown)
    failure = trial.details.get("failure")
    return f"{text} ({failure})" if failure else text


async def run(options: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run everything; returns the result written to `options.out`."""
    started = datetime.datetime.now(datetime.UTC)
    load_start = machine.load_average()
    clock = time.monotonic()
    wanted = sorted({p.package for p in options.peers if p.package})
    say(f"installing {', '.join(wanted) or 'nothing'} (cached after the first run)")
    found = await asyncio.to_thread(install.install, wanted)
    installed = {k: v for k, v in found.items() if isinstance(v, install.Installed)}
    peers_info: dict[str, dict[str, str]] = {}
    available = []
    for peer in options.peers:
        info = {"settings": SETTINGS[peer]}
        outcome = found.get(peer.package or "")
        if isinstance(outcome, install.InstallError):
            info["error"] = str(outcome)
            say(f"{peer}: not installed: {outcome}")
        else:
            available.append(peer)
            if isinstance(outcome, install.Installed):
                info["version"] = outcome.version
        peers_info[str(peer)] = info
    trials: list[Trial] = []
    with (
        procs.subreaper(),
        tempfile.TemporaryDirectory(prefix="ec2-terminal-peers-") as tmp,
    ):
        work = Path(tmp)
        (work / "sshd").mkdir()
        sshd = start_sshd(work / "sshd")
        try:
            if str(Peer.SSH) in peers_info:
                peers_info[str(Peer.SSH)]["version"] = _ssh_version()
            sizes = options.sizes
            largest = max(sizes.payload_mib, sizes.stall_mib, sizes.flood_mib) * MIB
            path = make_payload(work, largest)
            payload = Payload(path, largest, prefix_hashes(path, [sizes.stall_mib * MIB]))
            plan = _plan(options, available)
            for index, (workload, round_, peer) in enumerate(plan, 1):
                trial = await _trial(
                    workload, peer, round_, sshd, installed, payload, options, work
                )
                trials.append(trial)
                say(f"[{index}/{len(plan)}] {workload} r{round_ + 1} {peer}: {_headline(trial)}")
        finally:
            stop(sshd.process)
    result: dict[str, Any] = {
        "started": started.strftime(STARTED),
        "duration_s": round(time.monotonic() - clock, 1),
        "machine": machine.describe(),
        "load_start": load_start,
        "load_end": machine.load_average(),
        "sizes": asdict(options.sizes),
        "peers": peers_info,
        "trials": [t.as_json() for t in trials],
    }
    shown = [p for p in options.peers if p in available]
    rows = report.summarize(trials, shown)
    result["summary"] = report.rows_json(rows)
    write(result, rows, shown, options.out)
    return result


def render(saved: Path, out: Path) -> dict[str, Any]:
    """Summarize a saved run's trials again and rewrite its files in `out` (nothing is rerun)."""
    result: dict[str, Any] = json.loads(saved.read_text())
    trials = [Trial.from_json(t) for t in result["trials"]]
    shown = [Peer(name) for name, info in result["peers"].items() if "error" not in info]
    rows = report.summarize(trials, shown)
    result["summary"] = report.rows_json(rows)
    write(result, rows, shown, out)
    return result


def _ssh_version() -> str:
    import subprocess

    out = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return out.split(",")[0]


def write(
    result: dict[str, Any],
    rows: list[report.Row],
    peers: list[Peer],
    out: Path,
) -> None:
    """peers.json, peers.md and peers-echo.png in `out` (the latest run), plus a dated JSON."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1) + "\n"
    (out / "peers.json").write_text(text)
    started = datetime.datetime.strptime(result["started"], STARTED)
    (out / f"peers-{started.strftime('%Y%m%d-%H%M')}.json").write_text(text)
    (out / "peers.md").write_text(report.markdown(result, rows, peers))
    latencies: dict[str, list[float]] = {}
    for trial in result["trials"]:
        samples = trial["details"].get("latencies_us")
        if samples:
            latencies.setdefault(trial["peer"], []).extend(v / 1000 for v in samples)
    if latencies:
        load = f"load {result['load_start'][0]}→{result['load_end'][0]}"
        title = f"Keystroke echo, {result['started']} ({load})"
        plot.echo_cdf(latencies, out / "peers-echo.png", title)
