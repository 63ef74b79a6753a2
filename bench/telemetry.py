"""Tracing on against tracing off, side by side: throughput, echo latency, CPU and start-up.

    .venv/bin/python -m bench.telemetry [--size-mib 64] [--samples 300] [--rounds 3]

Starts the test sshd, the real collector, Jaeger and Prometheus (hack/otel/build), and two
session servers: one with tracing off (no OTEL_* at all), one exporting every span to the
collector over OTLP gRPC. Runs the bridge benchmark's `cat` throughput and keystroke echo on
each, interleaved, and times a process's start (imports and setup) both ways. Prints the
ratios on / off and writes bench/results/telemetry.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bridge import bridge_latencies, bridge_throughput, make_payload, percentile
from hack.otel.stack import Ports, running_stack
from tests.fixtures_server import RunningServer, start_server
from tests.fixtures_sshd import start_sshd
from tests.support import cpu_seconds, stop

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
# What `ec2-terminal serve` does before it serves: its imports, the settings, tracing's setup.
STARTUP = """
import time
started = time.perf_counter()
import sys
from app.cli.main import build_parser
from app.http.application import create_app
from app.settings import Settings, Target
from app.telemetry import Component, setup_telemetry
telemetry = setup_telemetry(Component.SESSION_SERVER)
create_app(Settings(target=Target(host="h")), telemetry=telemetry)
elapsed = time.perf_counter() - started
loaded = sum(1 for m in sys.modules if m.startswith("opentelemetry"))
telemetry.shutdown()
print(elapsed, loaded)
"""


def startup(env: dict[str, str], runs: int) -> tuple[float, int]:
    """Median seconds of the server's start (in a fresh interpreter) and modules loaded."""
    times, loaded = [], 0
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", STARTUP],
            env={"PATH": "/usr/bin", "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
        times.append(float(out[0]))
        loaded = int(out[1])
    return statistics.median(times), loaded


async def measure(
    servers: dict[str, RunningServer], payload: Path, samples: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Throughput (best round), CPU per MiB and echo latencies of each server, interleaved."""
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu = dict.fromkeys(servers, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, server in servers.items():
            before = cpu_seconds(server.pid)
            rates[name].append(await bridge_throughput(server, payload))
            cpu[name] += cpu_seconds(server.pid) - before
            latencies[name] += await bridge_latencies(server, samples // rounds)
    mib = payload.stat().st_size / 2**20
    return {
        name: {
            "mib_per_s": max(rates[name]) / 2**20,
            "cpu_ms_per_mib": 1000 * cpu[name] / (mib * rounds),
            "echo_p50_ms": 1000 * percentile(latencies[name], 50),
            "echo_p99_ms": 1000 * percentile(latencies[name], 99),
        }
        for name in servers
    }


def run(size_mib: int, samples: int, rounds: int, startup_runs: int) -> dict[str, Any]:
    ports = Ports.pick()
    traced_env = ports.app_env("ec2-terminal-session")
    with tempfile.TemporaryDirectory(prefix="ec2-terminal-bench-") as tmp:
        work = Path(tmp)
        for part in ("sshd", "off", "on", "otel"):
            (work / part).mkdir()
        sshd = start_sshd(work / "sshd")
        try:
            with running_stack(work / "otel", ports=ports):
                servers = {
                    "off": start_server(work / "off", sshd, log_level="warning"),
                    "on": start_server(work / "on", sshd, env=traced_env, log_level="warning"),
                }
                try:
                    payload = make_payload(work, size_mib * 2**20)
                    figures = asyncio.run(measure(servers, payload, samples, rounds))
                finally:
                    for server in servers.values():
                        server.stop()
                off_start, off_loaded = startup({}, startup_runs)
                on_start, on_loaded = startup(traced_env, startup_runs)
        finally:
            stop(sshd.process)
    figures["off"] |= {"startup_s": off_start, "otel_modules": off_loaded}
    figures["on"] |= {"startup_s": on_start, "otel_modules": on_loaded}
    off, on = figures["off"], figures["on"]
    ratios = {key: on[key] / off[key] for key in off if off[key]}
    return {"figures": figures, "ratios_on_over_off": ratios, "size_mib": size_mib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.size_mib, args.samples, args.rounds, args.startup_runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "telemetry.json").write_text(json.dumps(result, indent=2))
    off, on = result["figures"]["off"], result["figures"]["on"]
    print(f"{'measure':<24}{'off':>12}{'on':>12}{'on / off':>12}")
    for key in off:
        ratio = result["ratios_on_over_off"].get(key)
        shown = f"{ratio:12.2f}" if ratio is not None else f"{'':>12}"
        print(f"{key:<24}{off[key]:12.3f}{on[key]:12.3f}{shown}")
    print(f"({time.perf_counter() - started:.0f} s; bench/results/telemetry.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
