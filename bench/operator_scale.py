"""Scale benchmark: N TerminalSessions applied at once, time to all-Ready and operator peak RSS.

Baseline, run side by side: N bare Pods applied at once to the same control plane (kwok marks
them Ready), so the ratio shows what the operator adds on top of the API server and scheduler.

    hack/cluster up
    .venv/bin/python -m bench.operator_scale --sessions 100

Results are printed and written to bench/results/operator_scale.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import cpu_seconds, free_port, memory_kib

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "charts/ec2-terminal/crds/terminalsessions.ec2-terminal.io.yaml"


def cluster_env() -> dict[str, str]:
    """kubectl path and KUBECONFIG from `hack/cluster env`."""
    out = subprocess.run(
        [str(ROOT / "hack/cluster"), "env"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


class Kube:
    """A kubectl runner."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.kubectl = env.get("EC2_TERMINAL_KUBECTL", "kubectl")

    def run(self, *args: str, input: str | None = None) -> str:
        res = subprocess.run(
            [self.kubectl, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=300,
        )
        if res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def apply(self, items: list[dict[str, Any]], namespace: str) -> None:
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.run("apply", "--namespace", namespace, "-f", "-", input=body)

    def items(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(
            self.run("get", kind, "--namespace", namespace, "-o", "json")
        )["items"]
        return data


@contextmanager
def temp_namespace(kube: Kube, prefix: str) -> Iterator[str]:
    name = f"{prefix}-{secrets.token_hex(4)}"
    kube.run("create", "namespace", name)
    try:
        yield name
    finally:
        kube.run("delete", "namespace", name, "--wait=false")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not done after {timeout}s")
        time.sleep(0.25)
    return time.monotonic() - start


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def baseline_pods(kube: Kube, count: int, timeout: float) -> float:
    """Seconds for `count` bare Pods applied at once to be Ready."""
    with temp_namespace(kube, "bench-pods") as ns:
        pods = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p{i}"},
                "spec": {"containers": [{"name": "c", "image": "ec2-terminal:bench"}]},
            }
            for i in range(count)
        ]
        start = time.monotonic()
        kube.apply(pods, ns)
        wait_until(
            lambda: sum(pod_ready(p) for p in kube.items("pods", ns)) == count, timeout, "pods"
        )
        return time.monotonic() - start


def sessions_run(kube: Kube, count: int, resync: float, timeout: float) -> dict[str, float]:
    """Seconds for `count` TerminalSessions to be Ready, and the operator's memory."""
    with temp_namespace(kube, "bench-ts") as ns:
        port = free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log = (ROOT / "bench/results").joinpath("operator_scale.log").open("wb")
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "ec2-terminal-operator"),
                f"--namespace={ns}",
                f"--liveness={liveness}",
                f"--resync-seconds={resync}",
                "--log-format=full",
                *(["--verbose"] if os.environ.get("BENCH_VERBOSE") else []),
            ],
            env=kube.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def alive() -> bool:
                try:
                    with urllib.request.urlopen(liveness, timeout=1) as r:
                        return bool(r.status == 200)
                except OSError:
                    return False

            wait_until(alive, 60, "operator liveness")
            idle_rss = memory_kib(proc.pid, "VmRSS")
            key = base64.b64encode(b"not-a-key").decode()
            kube.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        # Opted in: the operator mounts no other Secret.
                        "metadata": {
                            "name": "ssh-key",
                            "labels": {"ec2-terminal.io/usable-by-sessions": "true"},
                        },
                        "data": {"ssh-privatekey": key},
                    }
                ],
                ns,
            )
            sessions = [
                {
                    "apiVersion": "ec2-terminal.io/v1alpha1",
                    "kind": "TerminalSession",
                    "metadata": {"name": f"s{i}"},
                    "spec": {
                        "target": {"host": f"10.0.{i // 250}.{i % 250 + 1}"},
                        "credentialsSecretRef": {"name": "ssh-key"},
                        "hostKey": {"policy": "Fingerprint", "fingerprint": "SHA256:" + "x" * 43},
                    },
                }
                for i in range(count)
            ]
            cpu_before = cpu_seconds(proc.pid)
            start = time.monotonic()
            kube.apply(sessions, ns)

            def all_ready() -> bool:
                items = kube.items("terminalsessions", ns)
                ready: int = sum((i.get("status") or {}).get("phase") == "Ready" for i in items)
                return ready == count

            wait_until(all_ready, timeout, "sessions")
            elapsed = time.monotonic() - start
            return {
                "seconds": elapsed,
                "operator_peak_rss_mib": memory_kib(proc.pid, "VmHWM") / 1024,
                "operator_idle_rss_mib": idle_rss / 1024,
                "operator_cpu_seconds": cpu_seconds(proc.pid) - cpu_before,
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--resync", type=float, default=5.0, help="operator resync seconds")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    kube = Kube(cluster_env())
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.run("wait", "--for=condition=established", "crd/terminalsessions.ec2-terminal.io")
    base = baseline_pods(kube, args.sessions, args.timeout)
    run = sessions_run(kube, args.sessions, args.resync, args.timeout)
    result = {
        "sessions": args.sessions,
        "resync_seconds": args.resync,
        "baseline_bare_pods_ready_seconds": round(base, 2),
        "sessions_ready_seconds": round(run["seconds"], 2),
        "ratio_sessions_to_bare_pods": round(run["seconds"] / base, 2),
        "operator_peak_rss_mib": round(run["operator_peak_rss_mib"], 1),
        "operator_idle_rss_mib": round(run["operator_idle_rss_mib"], 1),
        "operator_cpu_seconds_until_all_ready": round(run["operator_cpu_seconds"], 1),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    (ROOT / "bench/results/operator_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:36} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
