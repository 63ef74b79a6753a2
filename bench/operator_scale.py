"""Scale benchmark: N TerminalSessions applied at once, time to all-Ready and operator peak RSS.

Baseline, run side by side: N bare Pods applied at once to the same control plane (kwok marks
them Ready), so the ratio shows what the operator adds on top of the API server and scheduler.
Both the pods and the sessions are created by `--create-workers` concurrent `kubectl create`
processes, each POSTing its slice one object at a time (as a burst of users would arrive;
`1` is one serial `kubectl create` for all). For both, the bench reports when the last object
existed and the API requests per object until all are Ready.
Once every session is Ready, the API server's apiserver_request_total is read before and
after a rest window: the requests per second per session the operator keeps making, net of
what the control plane makes by itself in an equal window before the operator starts.

    hack/cluster up
    .venv/bin/python -m bench.operator_scale --sessions 100
    .venv/bin/python -m bench.operator_scale --sessions 1000 --rest-seconds 60
    .venv/bin/python -m bench.operator_scale --sessions 100 --create-workers 1   # serial

Results are printed and written to bench/results/operator_scale.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hack.localcluster.control import node_manifest
from tests.support import cpu_seconds, free_port, memory_kib

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "charts/ec2-terminal/crds/terminalsessions.ec2-terminal.io.yaml"
# The cluster's two kwok nodes take 110 pods each; larger runs get nodes of their own.
PODS_PER_BENCH_NODE = 250
BENCH_NODE_LABEL = "ec2-terminal.io/bench-node"
REQUESTS = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
DURATIONS = re.compile(
    r"^apiserver_request_duration_seconds_sum\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M
)
LABEL = re.compile(r'(\w+)="([^"]*)"')


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

    def create(self, items: list[dict[str, Any]], namespace: str, workers: int = 1) -> None:
        """One POST per object (apply would GET each first), from `workers` kubectl at once.

        Each `kubectl create` POSTs its slice one object at a time; `workers` 1 is one
        serial `kubectl create` for all.
        """

        def create(part: list[dict[str, Any]]) -> None:
            body = json.dumps({"apiVersion": "v1", "kind": "List", "items": part})
            self.run("create", "--namespace", namespace, "-f", "-", input=body)

        parts = slices(items, workers)
        if len(parts) == 1:
            create(parts[0])
            return
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            # list(): a failed create raises here, not silently in its thread.
            list(pool.map(create, parts))

    def field(self, kind: str, namespace: str, jsonpath: str) -> list[str]:
        """One field of every object, by a jsonpath over `.items[*]`."""
        out = self.run("get", kind, "--namespace", namespace, "-o", f"jsonpath={jsonpath}")
        return out.split()

    def requests(self) -> Counter[tuple[str, str]]:
        """apiserver_request_total by (verb, resource/subresource), summed over codes."""
        return Counter({k: int(v) for k, v in self.metric(REQUESTS).items()})

    def request_seconds(self) -> dict[tuple[str, str], float]:
        """The API server's own time spent on requests, by (verb, resource/subresource)."""
        return self.metric(DURATIONS)

    def metric(self, pattern: re.Pattern[str]) -> dict[tuple[str, str], float]:
        """A counter of /metrics summed by (verb, resource/subresource)."""
        totals: dict[tuple[str, str], float] = {}
        for match in pattern.finditer(self.run("get", "--raw", "/metrics")):
            labels = dict(LABEL.findall(match["labels"]))
            resource = labels.get("resource", "") + (
                "/" + labels["subresource"] if labels.get("subresource") else ""
            )
            key = (labels.get("verb", ""), resource)
            totals[key] = totals.get(key, 0.0) + float(match["value"])
        return totals


def slices(items: list[dict[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    """`items` in at most `count` contiguous slices of near equal length (none empty, unless
    `items` is: then one empty slice)."""
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    parts, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        parts.append(items[start:end])
        start = end
    return parts


def net_of_bench(
    requests: Counter[tuple[str, str]], resource: str, created: int, polls: int
) -> Counter[tuple[str, str]]:
    """`requests` (a difference of two `Kube.requests()`) less the bench's own: its `created`
    POSTs of `resource` and its `polls` LISTs of them."""
    net = requests.copy()
    net[("POST", resource)] -= created
    net[("LIST", resource)] -= polls
    return +net


def by_kind(requests: Counter[tuple[str, str]], top: int | None = None) -> dict[str, int]:
    """Request counts keyed "VERB resource", the most first."""
    return {f"{verb} {resource}": n for (verb, resource), n in requests.most_common(top)}


@contextmanager
def bench_nodes(kube: Kube, pods: int) -> Iterator[int]:
    """Enough extra kwok nodes for `pods` more pods; removed afterwards."""
    count = -(-pods // PODS_PER_BENCH_NODE) if pods > 100 else 0
    names = [f"bench-kwok-{i}" for i in range(count)]
    nodes = []
    for name in names:
        node = node_manifest(name)
        node["metadata"]["labels"][BENCH_NODE_LABEL] = "true"
        capacity = node["status"]["capacity"] | {"pods": str(PODS_PER_BENCH_NODE)}
        node["status"] |= {"capacity": capacity, "allocatable": capacity}
        nodes.append(node)
    if nodes:
        kube.apply(nodes, "default")
        kube.run("wait", "--for=condition=Ready", "--timeout=120s", *(f"node/{n}" for n in names))
    try:
        yield count
    finally:
        if nodes:
            kube.run("delete", "node", "-l", f"{BENCH_NODE_LABEL}=true", "--wait=false")


@contextmanager
def temp_namespace(kube: Kube, prefix: str, wait: bool = False) -> Iterator[str]:
    name = f"{prefix}-{secrets.token_hex(4)}"
    kube.run("create", "namespace", name)
    try:
        yield name
    finally:
        # The bare pods are gone before the sessions start, so they do not share the nodes.
        kube.run("delete", "namespace", name, f"--wait={str(wait).lower()}", "--timeout=600s")


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.25
) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not done after {timeout}s")
        time.sleep(every)
    return time.monotonic() - start


def wait_polls(predicate: Callable[[], bool], timeout: float, what: str, every: float) -> int:
    """Like wait_until, but returns how many times `predicate` was called."""
    calls = 0

    def counted() -> bool:
        nonlocal calls
        calls += 1
        return predicate()

    wait_until(counted, timeout, what, every)
    return calls


READY = '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}'


def baseline_pods(
    kube: Kube, count: int, timeout: float, every: float, workers: int
) -> dict[str, Any]:
    """Seconds for `count` bare Pods created at once to be Ready, and what that asked of the API.

    The requests are the control plane's (scheduler, kwok, controllers) less the bench's own
    creates and polls: what the operator's requests per session compare with.
    """
    with temp_namespace(kube, "bench-pods", wait=True) as ns:
        pods = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p{i}"},
                "spec": {"containers": [{"name": "c", "image": "ec2-terminal:bench"}]},
            }
            for i in range(count)
        ]
        before = kube.requests()
        start = time.monotonic()
        kube.create(pods, ns, workers)
        created = time.monotonic() - start
        polls = wait_polls(
            lambda: kube.field("pods", ns, READY).count("True") == count, timeout, "pods", every
        )
        elapsed = time.monotonic() - start
        to_ready = net_of_bench(kube.requests() - before, "pods", count, polls)
        return {
            "seconds": elapsed,
            "created_seconds": created,
            "requests_until_ready": to_ready.total(),
            "requests_until_ready_by_kind": by_kind(to_ready),
        }


def request_rate(kube: Kube, seconds: float) -> tuple[float, Counter[tuple[str, str]]]:
    """API requests per second over the next `seconds`, and their count by verb and resource."""
    before = kube.requests()
    start = time.monotonic()
    time.sleep(seconds)
    after = kube.requests()
    elapsed = time.monotonic() - start
    # The two reads of /metrics are themselves requests; leave them out.
    delta = Counter({k: v for k, v in (after - before).items() if k != ("GET", "")})
    return delta.total() / elapsed, delta


def slowest(
    seconds: dict[tuple[str, str], float], counts: Counter[tuple[str, str]], top: int = 6
) -> dict[str, float]:
    """Mean seconds per request of the kinds that took the API server longest in all."""
    # A watch's duration is how long it stayed open, not how slow it was.
    kinds = [(k, v) for k, v in seconds.items() if counts[k] and k[0] != "WATCH"]
    kinds.sort(key=lambda kv: -kv[1])
    return {
        f"{verb} {resource}": v / counts[(verb, resource)] for (verb, resource), v in kinds[:top]
    }


def release_sessions(kube: Kube, namespace: str) -> None:
    """Drops the operator's finalizer from every session, so the namespace can go without it.

    Otherwise the namespace stays Terminating and the namespace controller retries it every
    few seconds: load on the control plane for every later run.
    """
    names = kube.field("terminalsessions", namespace, "{.items[*].metadata.name}")
    unblock = json.dumps({"metadata": {"finalizers": None}})
    for i in range(0, len(names), 200):
        chunk = names[i : i + 200]
        kube.run(
            "patch", "terminalsessions", *chunk, "-n", namespace, "--type=merge", "-p", unblock
        )


def sessions_run(
    kube: Kube, count: int, resync: float, timeout: float, rest: float, every: float, workers: int
) -> dict[str, Any]:
    """Seconds for `count` TerminalSessions to be Ready, the operator's memory and requests."""
    with temp_namespace(kube, "bench-ts") as ns:
        port = free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log = (ROOT / "bench/results").joinpath("operator_scale.log").open("wb")
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "ec2-terminal-operator"),
                f"--namespace={ns}",
                f"--liveness={liveness}",
                f"--metrics-port={free_port()}",
                "--metrics-host=127.0.0.1",
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

            wait_until(alive, 60, "operator liveness", 0.25)
            idle_rss = memory_kib(proc.pid, "VmRSS")
            # What the control plane (kwok, controllers) asks for by itself, as the baseline.
            quiet_rate, _ = request_rate(kube, min(rest, 30))
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
            before = kube.requests()
            seconds_before = kube.request_seconds()
            start = time.monotonic()
            kube.create(sessions, ns, workers)
            # Each kubectl POSTs its slice one at a time: the last one exists only from here on.
            created = time.monotonic() - start

            def all_ready() -> bool:
                phases = kube.field("terminalsessions", ns, "{.items[*].status.phase}")
                return phases.count("Ready") == count

            polls = wait_polls(all_ready, timeout, "sessions", every)
            elapsed = time.monotonic() - start
            cpu_ready = cpu_seconds(proc.pid)
            # What reaching Ready cost the API server, less the bench's own creates and polls.
            to_ready = net_of_bench(kube.requests() - before, "terminalsessions", count, polls)
            seconds_to_ready = {
                k: v - seconds_before.get(k, 0.0) for k, v in kube.request_seconds().items()
            }
            rest_rate, at_rest = request_rate(kube, rest)
            cpu_rest = cpu_seconds(proc.pid) - cpu_ready
            return {
                "seconds": elapsed,
                "created_seconds": created,
                "operator_peak_rss_mib": memory_kib(proc.pid, "VmHWM") / 1024,
                "operator_idle_rss_mib": idle_rss / 1024,
                "operator_rss_at_rest_mib": memory_kib(proc.pid, "VmRSS") / 1024,
                "operator_cpu_seconds": cpu_ready - cpu_before,
                "operator_cpu_share_at_rest": cpu_rest / rest,
                "requests_per_second_at_rest": rest_rate,
                "requests_per_second_quiet": quiet_rate,
                "requests_at_rest_by_kind": by_kind(at_rest, 8),
                "requests_until_ready": to_ready.total(),
                "requests_until_ready_by_kind": by_kind(to_ready),
                # Which kinds the API server was slow to answer (the Service POST, issue 15).
                "mean_request_seconds_until_ready_by_kind": slowest(seconds_to_ready, to_ready),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
            release_sessions(kube, ns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--resync", type=float, default=5.0, help="operator resync seconds")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--rest-seconds", type=float, default=60, help="window for the request rate at rest"
    )
    parser.add_argument(
        "--create-workers",
        type=int,
        default=16,
        help="concurrent `kubectl create` processes for the pods and the sessions (1: serial)",
    )
    args = parser.parse_args()
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    kube = Kube(cluster_env())
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.run("wait", "--for=condition=established", "crd/terminalsessions.ec2-terminal.io")
    # Polling 1,000 objects through kubectl costs CPU the operator would miss.
    every = 0.25 if args.sessions <= 100 else 1.0
    with bench_nodes(kube, args.sessions) as nodes:
        base = baseline_pods(kube, args.sessions, args.timeout, every, args.create_workers)
        run = sessions_run(
            kube,
            args.sessions,
            args.resync,
            args.timeout,
            args.rest_seconds,
            every,
            args.create_workers,
        )
    net_rate = max(0.0, run["requests_per_second_at_rest"] - run["requests_per_second_quiet"])
    result = {
        "sessions": args.sessions,
        "resync_seconds": args.resync,
        "create_workers": args.create_workers,
        "baseline_bare_pods_ready_seconds": round(base["seconds"], 2),
        "baseline_bare_pods_all_created_seconds": round(base["created_seconds"], 2),
        "sessions_ready_seconds": round(run["seconds"], 2),
        "sessions_all_created_seconds": round(run["created_seconds"], 2),
        "sessions_ready_after_last_created_seconds": round(
            run["seconds"] - run["created_seconds"], 2
        ),
        "ratio_sessions_to_bare_pods": round(run["seconds"] / base["seconds"], 2),
        "operator_peak_rss_mib": round(run["operator_peak_rss_mib"], 1),
        "operator_idle_rss_mib": round(run["operator_idle_rss_mib"], 1),
        "operator_cpu_seconds_until_all_ready": round(run["operator_cpu_seconds"], 1),
        "operator_rss_at_rest_mib": round(run["operator_rss_at_rest_mib"], 1),
        "operator_cpu_share_at_rest": round(run["operator_cpu_share_at_rest"], 3),
        "api_requests_per_second_at_rest": round(run["requests_per_second_at_rest"], 2),
        "api_requests_per_second_quiet": round(run["requests_per_second_quiet"], 2),
        "api_requests_per_second_per_session": round(net_rate / args.sessions, 4),
        "api_requests_at_rest_by_kind": run["requests_at_rest_by_kind"],
        "api_requests_until_ready_per_session": round(
            run["requests_until_ready"] / args.sessions, 1
        ),
        "api_requests_until_ready_by_kind": run["requests_until_ready_by_kind"],
        "baseline_api_requests_until_ready_per_bare_pod": round(
            base["requests_until_ready"] / args.sessions, 1
        ),
        "baseline_api_requests_until_ready_by_kind": base["requests_until_ready_by_kind"],
        "api_mean_seconds_until_ready_by_kind": {
            kind: round(seconds, 3)
            for kind, seconds in run["mean_request_seconds_until_ready_by_kind"].items()
        },
        "bench_nodes": nodes,
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    (ROOT / "bench/results/operator_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:36} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
