"""Health-check benchmark: checks per second one worker sustains against N sessions, and what a
check adds to its bare probes.

Baseline, run side by side: the same probes (the SSH banner of the test sshd and /readyz of a
real session server) called directly in one process, with no Celery, Redis or API server. The
ratios show what the queue, the lock, reading the session and writing its status add.

    hack/cluster up
    .venv/bin/python -m bench.healthcheck --sessions 100 --concurrency 1 4

Sessions are made directly (TerminalSession objects, their Services, status Ready), without an
operator, so only the health-check path is measured. Results go to bench/results/healthcheck.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from app.healthcheck import probes
from app.healthcheck.celeryapp import TASK_CHECK_SESSION, create_celery
from app.healthcheck.sessions import GROUP, PLURAL, VERSION, KubeClients
from app.healthcheck.settings import HealthCheckSettings
from bench.operator_scale import CRD, Kube, cluster_env, temp_namespace, wait_until
from tests.fixtures_healthcheck import RedisServer, WorkerProcess, worker_env
from tests.fixtures_server import start_server
from tests.fixtures_sshd import start_sshd
from tests.support import console_script, free_port, poll, stop

ROOT = Path(__file__).resolve().parent.parent


def make_sessions(kube: KubeClients, namespace: str, count: int, host: str, port: int) -> None:
    """N Ready sessions onto the sshd, each with its Service, as the operator would leave them."""
    for i in range(count):
        name = f"s{i}"
        kube.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TerminalSession",
                "metadata": {"name": name},
                "spec": {
                    "target": {"host": host, "port": port},
                    "credentialsSecretRef": {"name": "ssh-key"},
                    "hostKey": {"policy": "Fingerprint", "fingerprint": "SHA256:" + "x" * 43},
                },
            },
        )
        kube.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": {"phase": "Ready", "serviceName": name}},
        )
        kube.core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ServiceSpec(
                    ports=[client.V1ServicePort(name="http", port=80, target_port=8000)]
                ),
            ),
        )


def total_checks(worker: WorkerProcess) -> float:
    """Checks the worker finished, whatever their result."""
    text = worker.get("/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("ec2_terminal_health_checks_total{")
    )


def bare_probes(host: str, port: int, server: str, count: int) -> list[float]:
    """Seconds per bare probe pair (banner, then /readyz), `count` times, one at a time."""

    async def run() -> list[float]:
        out = []
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            for _ in range(count):
                start = time.perf_counter()
                await asyncio.gather(
                    probes.ssh_banner(host, port, 5, 5), probes.readyz(client, server, "bench")
                )
                out.append(time.perf_counter() - start)
        return out

    return asyncio.run(run())


def start_worker(env: dict[str, str], concurrency: int, directory: Path) -> WorkerProcess:
    port = free_port()
    full = env | {
        "EC2_TERMINAL_WORKER_LISTEN_PORT": str(port),
        "EC2_TERMINAL_WORKER_CONCURRENCY": str(concurrency),
    }
    log_path = directory / f"worker-{concurrency}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [console_script("ec2-terminal"), "worker", "--log-level=warning"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(proc, port, log_path, env)
    poll(lambda: worker.get("/readyz").status_code == 200, timeout=60, what="worker")
    return worker


def throughput(worker: WorkerProcess, enqueue: Callable[[], None], count: int) -> float:
    """Checks per second from enqueueing `count` checks until the worker finished them all."""
    before = total_checks(worker)
    start = time.monotonic()
    enqueue()
    try:
        wait_until(lambda: total_checks(worker) - before >= count, 300, "checks")
    except TimeoutError:
        print(worker.log()[-3000:])
        raise
    return count / (time.monotonic() - start)


def end_to_end(kube: KubeClients, celery: Any, namespace: str, rounds: int) -> list[float]:
    """Seconds from sending one check until its result is readable in the session's status."""
    out = []
    for _ in range(rounds):
        start = time.monotonic()
        task_id = celery.send_task(TASK_CHECK_SESSION, args=[namespace, "s0"]).id

        def written(task_id: str = task_id) -> bool:
            body: Any = kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, "s0"
            )
            return bool((body.get("status") or {}).get("healthCheck", {}).get("taskId") == task_id)

        # Polled every 5 ms: the figure is a few tens of ms, a coarse poll would hide it.
        deadline = start + 60
        while not written():
            if time.monotonic() > deadline:
                raise TimeoutError("one check: no result after 60 s")
            time.sleep(0.005)
        out.append(time.monotonic() - start)
    return out


def latency_figures(
    worker: WorkerProcess,
    enqueue_command: Callable[[], None],
    kube: KubeClients,
    celery: Any,
    namespace: str,
    args: argparse.Namespace,
) -> dict[str, float]:
    """The enqueue command's run time, and one check's time in the worker and end to end."""
    start = time.monotonic()
    enqueue_command()
    figures = {"enqueue_command_seconds": round(time.monotonic() - start, 2)}
    expected = (args.rounds + 1) * args.sessions
    wait_until(lambda: total_checks(worker) >= expected, 300, "the command's checks")
    spent = worker.metric("ec2_terminal_health_check_seconds_sum")
    count = worker.metric("ec2_terminal_health_check_seconds_count")
    e2e = end_to_end(kube, celery, namespace, args.latency_samples)
    spent = worker.metric("ec2_terminal_health_check_seconds_sum") - spent
    count = worker.metric("ec2_terminal_health_check_seconds_count") - count
    figures["check_in_worker_ms_mean"] = round(spent / count * 1000, 1)
    figures["check_end_to_end_ms_p50"] = round(statistics.median(e2e) * 1000, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=30)
    args = parser.parse_args()
    results_dir = ROOT / "bench/results"
    results_dir.mkdir(parents=True, exist_ok=True)
    env = cluster_env()
    kube_cli = Kube(env)
    kube_cli.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube_cli.run("wait", "--for=condition=established", "crd/terminalsessions.ec2-terminal.io")
    os.environ["KUBECONFIG"] = env["KUBECONFIG"]
    kube = KubeClients.load()
    with tempfile.TemporaryDirectory(prefix="bench-hc-") as tmp:
        work = Path(tmp)
        (work / "sshd").mkdir()
        (work / "redis").mkdir()
        (work / "server").mkdir()
        sshd = start_sshd(work / "sshd")
        redis = RedisServer(port=free_port(), directory=work / "redis")
        redis.start()
        server = start_server(work / "server", sshd)
        result: dict[str, Any] = {"sessions": args.sessions}
        try:
            with temp_namespace(kube_cli, "bench-hc") as ns:
                make_sessions(kube, ns, args.sessions, sshd.host, sshd.port)
                wenv = worker_env(redis, work) | {
                    "KUBECONFIG": env["KUBECONFIG"],
                    "EC2_TERMINAL_HEALTH_SESSION_ENDPOINT": server.origin,
                }
                enqueue_env = wenv

                def enqueue_command() -> None:
                    subprocess.run(
                        [console_script("ec2-terminal"), "health-check", f"--namespace={ns}"],
                        env=enqueue_env,
                        check=True,
                        capture_output=True,
                        timeout=120,
                    )

                settings = HealthCheckSettings(redis_url=redis.url, redis_password=redis.password)
                celery = create_celery(settings)

                def enqueue() -> None:
                    # What the command does after listing, without its process start-up.
                    for i in range(args.sessions):
                        celery.send_task(TASK_CHECK_SESSION, args=[ns, f"s{i}"])

                bare = bare_probes(sshd.host, sshd.port, server.origin, args.sessions)
                result["bare_probes_per_second"] = round(len(bare) / sum(bare), 1)
                result["bare_probe_ms_p50"] = round(statistics.median(bare) * 1000, 2)
                for concurrency in args.concurrency:
                    worker = start_worker(wenv, concurrency, work)
                    try:
                        rates = [
                            throughput(worker, enqueue, args.sessions) for _ in range(args.rounds)
                        ]
                        result[f"checks_per_second_concurrency_{concurrency}"] = round(
                            max(rates), 1
                        )
                        if concurrency == args.concurrency[0]:
                            result |= latency_figures(
                                worker, enqueue_command, kube, celery, ns, args
                            )
                            result["added_latency_ms_p50"] = round(
                                result["check_end_to_end_ms_p50"] - result["bare_probe_ms_p50"], 1
                            )
                            result["ratio_check_to_bare_probe_latency"] = round(
                                result["check_end_to_end_ms_p50"] / result["bare_probe_ms_p50"], 1
                            )
                    finally:
                        worker.stop()
                celery.close()
                first = args.concurrency[0]
                result["ratio_checks_to_bare_probes_per_second"] = round(
                    result[f"checks_per_second_concurrency_{first}"]
                    / result["bare_probes_per_second"],
                    3,
                )
        finally:
            server.stop()
            redis.stop()
            stop(sshd.process)
    result["load_average_1m"] = round(os.getloadavg()[0], 1)
    (results_dir / "healthcheck.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:44} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
