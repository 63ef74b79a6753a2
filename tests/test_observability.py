"""The observability stack of k8s/observability, run for real: configs through the real binaries,
spans through the collector into Jaeger and Prometheus, a real server, worker and operator traced
and scraped, every dashboard query answered, and the kustomization applied to the local API
server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as OTLPHttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from hack.otel.stack import (
    COLLECTOR_CONFIG,
    JAEGER_CONFIG,
    PROMETHEUS_CONFIG,
    SHIPPED,
    Binary,
    PodTarget,
    Ports,
    Stack,
    derive_prometheus_config,
)
from tests.fixtures_healthcheck import RedisServer, worker_env
from tests.fixtures_kube import KubeCluster, fresh_namespace, wait_for
from tests.fixtures_operator import key_secret, operator_processes, session_manifest
from tests.fixtures_otel import (
    STATUS_ERROR,
    SpanRecord,
    StackFactory,
    jaeger_api,
    prometheus_query,
    read_spans,
    stack_factory,
)
from tests.fixtures_server import RunningServer, start_server
from tests.fixtures_sshd import Sshd, start_sshd
from tests.support import CLI, free_port, poll, stop
from tests.wsclient import connected, open_client

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((SHIPPED / "grafana/dashboards").glob("*.json"))
NAMESPACE = "ec2-terminal-observability"
# Metric names the dashboards query whose emitters do not exist yet: docs/observability.md is
# their contract. test_pending_metrics_are_still_unemitted fails as soon as app/ or operator/
# defines one, so that it moves out of here and its panels must then return a series.
PENDING_METRICS: frozenset[str] = frozenset()
METRIC_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def run(
    argv: list[str | Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a binary to completion (60 s at most)."""
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, env=env
    )


def downward_api_env(workload: dict[str, Any]) -> dict[str, str]:
    """The variables a workload's container gets, with field references filled like a kubelet."""
    values = {"status.podIP": "10.244.0.7", "spec.nodeName": "node-a"}
    container = workload["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = values[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def workload(path: Path, kind: str) -> dict[str, Any]:
    """The one object of `kind` in a manifest file."""
    (found,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == kind]
    return dict(found)


# ---------------------------------------------------------------- configurations


def test_collector_has_exactly_the_components_of_the_shipped_config(
    otel_binaries: dict[Binary, Path],
) -> None:
    shipped = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    used = {
        kind: {name.split("/")[0] for name in shipped.get(kind, {})}
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions")
    }
    # The tests' and the demo's extra exporters (hack/otel/builder.yaml).
    used["exporters"] |= {"file", "debug"}
    out = run([otel_binaries[Binary.OTELCOL], "components"])
    assert out.returncode == 0, out.stderr
    built = yaml.safe_load(out.stdout)
    assert {kind: {c["name"] for c in built.get(kind) or []} for kind in used} == used


def test_shipped_collector_config_validates_with_the_daemonsets_environment(
    otel_binaries: dict[Binary, Path],
) -> None:
    env = downward_api_env(workload(SHIPPED / "collector/daemonset.yaml", "DaemonSet"))
    referenced = set(re.findall(r"\$\{env:(\w+)\}", COLLECTOR_CONFIG.read_text()))
    assert referenced <= set(env), f"the DaemonSet does not set {referenced - set(env)}"
    otelcol = otel_binaries[Binary.OTELCOL]
    valid = run([otelcol, "validate", f"--config=file:{COLLECTOR_CONFIG}"], env)
    assert valid.returncode == 0, valid.stderr
    # validate does check: without the node name k8s_attributes filters on, it refuses.
    without_node = {k: v for k, v in env.items() if k != "K8S_NODE_NAME"}
    refused = run([otelcol, "validate", f"--config=file:{COLLECTOR_CONFIG}"], without_node)
    assert refused.returncode != 0
    assert "K8S_NODE_NAME" in refused.stderr


def test_a_collector_pipeline_naming_an_unknown_processor_fails_validation(
    otel_binaries: dict[Binary, Path], tmp_path: Path
) -> None:
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    config["service"]["pipelines"]["traces"]["processors"].append("batch/missing")
    broken = tmp_path / "collector.yaml"
    broken.write_text(yaml.safe_dump(config))
    env = downward_api_env(workload(SHIPPED / "collector/daemonset.yaml", "DaemonSet"))
    out = run([otel_binaries[Binary.OTELCOL], "validate", f"--config=file:{broken}"], env)
    assert out.returncode != 0
    assert "batch/missing" in out.stderr


def test_jaeger_config_references_only_what_its_deployment_sets() -> None:
    env = downward_api_env(workload(SHIPPED / "jaeger/deployment.yaml", "Deployment"))
    referenced = set(re.findall(r"\$\{env:(\w+)\}", JAEGER_CONFIG.read_text()))
    assert referenced <= set(env), f"the Deployment does not set {referenced - set(env)}"


def test_shipped_prometheus_config_passes_upstream_promtool(
    otel_binaries: dict[Binary, Path], tmp_path: Path
) -> None:
    promtool = otel_binaries[Binary.UPSTREAM_PROMTOOL]
    ok = run([promtool, "check", "config", PROMETHEUS_CONFIG])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["scrape_configs"][1]["kubernetes_sd_configs"][0]["role"] = "pods"
    broken = tmp_path / "prometheus.yml"
    broken.write_text(yaml.safe_dump(config))
    refused = run([promtool, "check", "config", broken])
    assert refused.returncode != 0
    assert "pods" in refused.stdout + refused.stderr


def test_the_derived_prometheus_config_passes_debians_promtool(
    otel_binaries: dict[Binary, Path], tmp_path: Path
) -> None:
    target = PodTarget("127.0.0.1:9", "ns", "pod", annotations={"prometheus.io/scrape": "true"})
    derived = derive_prometheus_config(
        yaml.safe_load(PROMETHEUS_CONFIG.read_text()),
        {"kubernetes-pods": [target]},
        "127.0.0.1:9090",
        "1s",
    )
    assert not any("kubernetes_sd_configs" in job for job in derived["scrape_configs"])
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(derived))
    out = run([otel_binaries[Binary.PROMTOOL], "check", "config", path])
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- the running stack


SERVER_POD = PodTarget(
    address="",
    namespace="ec2-terminal-test",
    pod="session-demo",
    labels={
        "app.kubernetes.io/name": "ec2-terminal",
        "app.kubernetes.io/component": "session",
        "ec2-terminal.io/session": "demo",
    },
    annotations={"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics"},
)


def ec2_terminal_pod(namespace: str, pod: str, component: str) -> PodTarget:
    """A pod of ours that asks to be scraped (its address filled in later)."""
    return PodTarget(
        address="",
        namespace=namespace,
        pod=pod,
        labels={"app.kubernetes.io/name": "ec2-terminal", "app.kubernetes.io/component": component},
        annotations={"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics"},
    )


WORKER_POD = ec2_terminal_pod("ec2-terminal-test", "health-worker-0", "health-worker")
OPERATOR_POD = ec2_terminal_pod("ec2-terminal", "ec2-terminal-operator-0", "operator")


@contextlib.contextmanager
def beat_worker(
    directory: Path, server: RunningServer, sshd: Sshd, otel: dict[str, str]
) -> Iterator[int]:
    """Redis and an `ec2-terminal worker --beat` checking `server` every second; its port."""
    redis = RedisServer(port=free_port(), directory=directory / "redis")
    redis.directory.mkdir()
    redis.start()
    port = free_port()
    env = worker_env(
        redis,
        directory,
        {
            "EC2_TERMINAL_WORKER_LISTEN_PORT": str(port),
            "EC2_TERMINAL_SERVER_URL": server.origin,
            "EC2_TERMINAL_HEALTH_INTERVAL": "1",
            "EC2_TERMINAL_HOST": sshd.host,
            "EC2_TERMINAL_PORT": str(sshd.port),
            **otel,
        },
    )
    with (directory / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [CLI, "worker", "--beat"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        def checked() -> bool:
            assert worker.poll() is None, (directory / "worker.log").read_text()
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
            return 'ec2_terminal_health_checks_total{result="ok"}' in text

        poll(checked, timeout=60, what="the worker's first scheduled check")
        yield port
    finally:
        stop(worker)
        redis.stop()


@contextlib.contextmanager
def reconciling_operator(
    kube_cluster: KubeCluster, directory: Path, otel: dict[str, str]
) -> Iterator[int]:
    """An operator passing over one session in a namespace of its own; its metrics port."""
    with (
        fresh_namespace(kube_cluster, []) as namespace,
        operator_processes(kube_cluster, directory) as start,
    ):
        kube_cluster.apply(key_secret(), namespace=namespace)
        kube_cluster.apply(session_manifest("observed"), namespace=namespace)
        operator = start(namespace, env=otel)
        yield int(operator.metrics_url.split(":")[-1].split("/")[0])


@dataclass(frozen=True)
class Observed:
    """A stack that has seen a terminal session's metrics and two traces, and the spans of a
    traced server, worker and operator."""

    stack: Stack
    server: RunningServer
    service: str
    trace_id: str
    span_file: Path
    # The terminal session the traffic ran (its id must never reach a span).
    session_id: str

    def spans(self, service: str, name: str) -> list[SpanRecord]:
        """The spans of `service` called `name` written so far."""
        return [s for s in read_spans(self.span_file) if (s.service, s.name) == (service, name)]


def with_address(target: PodTarget, port: int, **changes: Any) -> PodTarget:
    """`pod` at 127.0.0.1:port, annotated with that port."""
    annotations = {**target.annotations, "prometheus.io/port": str(port)}
    return replace(target, address=f"127.0.0.1:{port}", annotations=annotations, **changes)


async def terminal_traffic(server: RunningServer) -> str:
    """A session that runs a command, is taken over by a second connection and exits; and one
    resume of a session that does not exist."""
    client = await connected(server)
    await client.resize(100, 30)
    await client.send_input("echo observed-$((6*7))\r")
    await client.until_text("observed-42")
    session_id = client.session_id
    second = await open_client(server.base_url, server.token)
    second.offset = client.offset  # the replay starts where the first connection stopped
    await second.hello(120, 40, resume=(session_id, client.offset))
    await second.until(lambda c: any(s["state"] == "resumed" for s in c.statuses))
    await client.until_closed()
    await second.send_input("exit\r")
    await second.until_closed()
    assert second.exit is not None
    stray = await open_client(server.base_url, server.token)
    await stray.hello(resume=("no-such-session", 0))
    await stray.until_closed()
    assert stray.error
    assert stray.error["code"] == "session_not_found"
    return session_id


def send_trace(exporter: SpanExporter, service: str) -> str:
    """A server span with an ok child and a failed child, exported at once; the trace id."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service, "k8s.namespace.name": "ec2-terminal-test"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.test_observability")
    with tracer.start_as_current_span("GET /s/{id}", kind=SpanKind.SERVER) as root:
        with tracer.start_as_current_span("ssh.connect"):
            pass
        with tracer.start_as_current_span("ssh.authenticate") as failed:
            failed.set_status(Status(StatusCode.ERROR, "denied"))
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory,
    otel_binaries: dict[Binary, Path],
    kube_cluster: KubeCluster,
    terminalsession_crd: str,
) -> Iterator[Observed]:
    """A stack scraping and receiving the spans of a real session server after traffic, of a
    health-check worker and of an operator, with spans sent over gRPC and HTTP besides."""
    ports = Ports.pick()  # first, so that everything started before the stack points at it
    sshd = start_sshd(tmp_path_factory.mktemp("sshd"))
    server = start_server(
        tmp_path_factory.mktemp("server"), sshd, env=ports.app_env("ec2-terminal-session")
    )
    # The same server again as a pod still Pending: the shipped relabelling must drop it.
    pending = with_address(SERVER_POD, server.port, pod="session-pending", phase="Pending")
    span_file = tmp_path_factory.mktemp("spans") / "spans.jsonl"
    try:
        with (
            beat_worker(
                tmp_path_factory.mktemp("worker"),
                server,
                sshd,
                ports.app_env("ec2-terminal-worker"),
            ) as worker_port,
            reconciling_operator(
                kube_cluster,
                tmp_path_factory.mktemp("operator"),
                ports.app_env("ec2-terminal-operator"),
            ) as operator_port,
            stack_factory(lambda: tmp_path_factory.mktemp("otel"), otel_binaries) as start,
        ):
            targets = [
                with_address(SERVER_POD, server.port),
                pending,
                with_address(WORKER_POD, worker_port),
                with_address(OPERATOR_POD, operator_port),
            ]
            stack = start(targets, span_file, ports)
            session_id = asyncio.run(terminal_traffic(server))
            service = "ec2-terminal-test"
            trace_id = send_trace(
                OTLPSpanExporter(endpoint=stack.otlp_grpc_endpoint, insecure=True), service
            )
            send_trace(
                OTLPHttpSpanExporter(endpoint=f"{stack.otlp_http_endpoint}/v1/traces"),
                f"{service}-http",
            )
            yield Observed(stack, server, service, trace_id, span_file, session_id)
    finally:
        server.stop()
        stop(sshd.process)


def test_spans_go_through_the_collector_into_jaeger_with_their_parents(
    observed: Observed,
) -> None:
    def trace() -> Any:
        data = jaeger_api(observed.stack, f"traces/{observed.trace_id}")["data"]
        return data[0] if data and len(data[0]["spans"]) == 3 else None

    found = poll(trace, timeout=30, what="the trace in Jaeger")
    spans = {s["operationName"]: s for s in found["spans"]}
    root = spans["GET /s/{id}"]
    for child in ("ssh.connect", "ssh.authenticate"):
        assert {"refType": "CHILD_OF", "traceID": observed.trace_id, "spanID": root["spanID"]} in [
            {k: r[k] for k in ("refType", "traceID", "spanID")} for r in spans[child]["references"]
        ]
    (process,) = found["processes"].values()
    assert process["serviceName"] == observed.service
    services = poll(
        lambda: (
            {observed.service, f"{observed.service}-http"}
            <= set(jaeger_api(observed.stack, "services")["data"] or [])
        ),
        timeout=30,
        what="both services in Jaeger",
    )
    assert services


def test_the_file_exporter_writes_the_spans_it_is_given(observed: Observed) -> None:
    poll(
        lambda: observed.span_file.exists() and observed.trace_id in observed.span_file.read_text(),
        timeout=30,
        what=f"trace {observed.trace_id} in {observed.span_file}",
    )
    lines = [json.loads(line) for line in observed.span_file.read_text().splitlines()]
    assert all("resourceSpans" in line for line in lines)


def test_span_metrics_reach_prometheus_and_jaegers_monitor_tab(observed: Observed) -> None:
    calls = poll(
        lambda: prometheus_query(
            observed.stack,
            f'traces_span_metrics_calls_total{{service_name="{observed.service}"}}',
        ),
        timeout=60,
        what="span metrics in Prometheus",
    )
    by_span = {s["metric"]["span_name"]: s["metric"] for s in calls}
    assert set(by_span) == {"GET /s/{id}", "ssh.connect", "ssh.authenticate"}
    assert by_span["ssh.authenticate"]["status_code"] == "STATUS_CODE_ERROR"
    assert by_span["GET /s/{id}"]["span_kind"] == "SPAN_KIND_SERVER"
    assert by_span["GET /s/{id}"]["job"] == "otel-collector"
    # Jaeger's Service Performance Monitoring reads the same series through the shipped config.
    now_ms = int(time.time() * 1000)

    def monitor() -> Any:
        body = jaeger_api(
            observed.stack,
            "metrics/calls",
            service=observed.service,
            endTs=now_ms + 60_000,
            lookback=600_000,
            step=5_000,
            ratePer=60_000,
            spanKind="server",
        )
        return [m for m in body["metrics"] if m["metricPoints"]]

    assert poll(monitor, timeout=60, what="call rates in Jaeger's monitor API")


def test_prometheus_scrapes_the_session_server_with_the_shipped_relabelling(
    observed: Observed,
) -> None:
    series = poll(
        lambda: prometheus_query(
            observed.stack, 'ec2_terminal_sessions_total{job="kubernetes-pods"}'
        ),
        timeout=30,
        what="the server's metrics in Prometheus",
    )
    (labels,) = [s["metric"] for s in series]
    assert labels["namespace"] == "ec2-terminal-test"
    assert labels["pod"] == "session-demo"
    assert labels["app"] == "ec2-terminal"
    assert labels["component"] == "session"
    assert labels["session"] == "demo"
    assert labels["instance"] == f"127.0.0.1:{observed.server.port}"
    assert float(series[0]["value"][1]) >= 1
    # The Pending pod's target never passes the keep rules.
    assert prometheus_query(observed.stack, 'up{pod="session-pending"}') == []
    up = prometheus_query(observed.stack, "up")
    assert {(s["metric"]["job"], s["value"][1]) for s in up} == {
        ("prometheus", "1"),
        ("otel-collector", "1"),
        ("kubernetes-pods", "1"),
    }


def test_the_session_server_the_worker_and_the_operator_send_their_spans(
    observed: Observed,
) -> None:
    expected = [
        ("ec2-terminal-session", "WebSocket /ws"),
        ("ec2-terminal-session", "ssh.connect"),
        ("ec2-terminal-session", "ssh.authenticate"),
        ("ec2-terminal-worker", "run/ec2_terminal.check_server"),
        ("ec2-terminal-worker", "healthcheck.check_server"),
        ("ec2-terminal-operator", "operator.reconcile"),
    ]
    for service, name in expected:

        def sent(service: str = service, name: str = name) -> list[SpanRecord]:
            return observed.spans(service, name)

        poll(sent, timeout=60, what=f"a {name} span of {service}")
    connect = observed.spans("ec2-terminal-session", "ssh.connect")[0]
    auth = observed.spans("ec2-terminal-session", "ssh.authenticate")[0]
    assert auth.parent_id == connect.span_id
    assert connect.attributes["server.port"] > 0
    # The beat's check of the server continues in the server (its /readyz), which is traced
    # only then: the probes of kubelets and scrapes of Prometheus (no trace context) are not.
    check = observed.spans("ec2-terminal-worker", "healthcheck.check_server")[0]
    readyz = poll(
        lambda: [
            s
            for s in observed.spans("ec2-terminal-session", "GET /readyz")
            if s.trace_id == check.trace_id
        ],
        timeout=30,
        what="the server's /readyz in the beat check's trace",
    )
    assert readyz
    assert observed.spans("ec2-terminal-session", "GET /metrics") == []


def test_a_websocket_is_one_span_with_its_life_as_events(observed: Observed) -> None:
    def connections() -> list[SpanRecord]:
        found = observed.spans("ec2-terminal-session", "WebSocket /ws")
        return found if len(found) >= 3 else []

    spans = poll(connections, timeout=60, what="the three WebSocket spans")
    names = {s.name for s in read_spans(observed.span_file)}
    assert not [n for n in names if "receive" in n or " send" in n], names
    events = {s.span_id: [name for name, _ in s.events] for s in spans}
    (first,) = [s for s in spans if events[s.span_id] == ["connect", "resize", "takeover"]]
    (second,) = [s for s in spans if events[s.span_id] == ["resume", "exit"]]
    (stray,) = [s for s in spans if events[s.span_id] == ["error"]]
    connect = dict(first.events)["connect"]
    assert (connect["cols"], connect["rows"]) == (80, 24)
    assert dict(first.events)["resize"] == {"cols": 100, "rows": 30}
    resume = dict(second.events)["resume"]
    assert resume["takeover"] is True
    assert resume["session"] == connect["session"] == first.attributes["ec2_terminal.session"]
    assert dict(second.events)["exit"]["exit_status"] == 0
    assert first.attributes["websocket.close.code"] == 1008
    assert second.attributes["websocket.close.code"] == 1000
    assert second.status != STATUS_ERROR
    # A resume of an unknown session is the client's mistake, recorded but not an error.
    assert dict(stray.events)["error"]["code"] == "session_not_found"
    assert stray.status != STATUS_ERROR
    # Neither the session id (it resumes the session) nor the token appear anywhere.
    text = observed.span_file.read_text()
    assert observed.server.token not in text
    assert observed.session_id not in text


def test_a_fresh_jaeger_answers_its_query_api_with_the_shipped_config(
    otel_stack_factory: StackFactory,
) -> None:
    stack = otel_stack_factory()
    assert jaeger_api(stack, "services") == {
        "data": [],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    response = httpx.get(f"{stack.jaeger_url}/api/traces/{'0' * 31}1", timeout=10)
    assert response.status_code == 404
    # Its own metrics are scraped like any annotated pod's.
    poll(
        lambda: prometheus_query(stack, 'up{job="kubernetes-pods", pod="jaeger-local"} == 1'),
        timeout=30,
        what="Prometheus scraping Jaeger",
    )


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) for every target and variable of every dashboard."""
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], target["expr"]))
    return queries


def metric_names(promql: str) -> set[str]:
    """The base names of the ec2-terminal and span metrics a query reads."""
    names = set()
    for name in re.findall(r"\b(?:ec2_terminal|traces_span_metrics)_\w+", promql):
        for suffix in METRIC_SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def as_prometheus_runs_it(promql: str) -> str:
    """A dashboard query with Grafana's variables filled in as Grafana would."""
    return promql.replace("$__rate_interval", "1m").replace("$service", ".+")


@pytest.mark.parametrize(
    ("dashboard", "panel", "promql"),
    dashboard_queries(),
    ids=[f"{d}:{p}:{i}" for i, (d, p, _) in enumerate(dashboard_queries())],
)
def test_every_dashboard_query_returns_a_series(
    observed: Observed, dashboard: str, panel: str, promql: str
) -> None:
    query = as_prometheus_runs_it(promql)
    if metric_names(promql) & PENDING_METRICS:
        # Runs (a syntax or function error fails here) but nothing emits its metric yet.
        prometheus_query(observed.stack, query)
        return
    poll(
        lambda: prometheus_query(observed.stack, query),
        timeout=60,
        what=f"a series for {dashboard} / {panel}: {query}",
    )


def test_the_service_variable_lists_the_traced_services(observed: Observed) -> None:
    (board,) = [json.loads(p.read_text()) for p in DASHBOARDS if p.name.endswith("-red.json")]
    (variable,) = board["templating"]["list"]
    match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
    assert match, variable["definition"]
    metric, label = match.groups()

    def values() -> Any:
        response = httpx.get(
            f"{observed.stack.prometheus_url}/api/v1/label/{label}/values",
            params={"match[]": metric},
        )
        return set(response.json()["data"])

    poll(lambda: observed.service in values(), timeout=30, what=f"{observed.service} in {label}")


def test_pending_metrics_are_still_unemitted_and_documented() -> None:
    sources = "\n".join(
        p.read_text() for d in ("app", "operator") for p in (ROOT / d).rglob("*.py")
    )
    emitted = {name for name in PENDING_METRICS if f'"{name}"' in sources}
    assert not emitted, f"now emitted: move {sorted(emitted)} out of PENDING_METRICS"
    contract = (ROOT / "docs/observability.md").read_text()
    queried = set().union(*(metric_names(q) for _, _, q in dashboard_queries()))
    undocumented = {name for name in queried if name not in contract}
    assert not undocumented, f"docs/observability.md does not list {sorted(undocumented)}"


# ---------------------------------------------------------------- hack/demo --observability


def children(pid: int) -> list[int]:
    """A process's direct children."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_demo(pid: int) -> bool:
    """Whether a process is `ec2-terminal demo` (run by its interpreter, python)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return any(a.endswith(b"/ec2-terminal") and b == b"demo" for a, b in itertools.pairwise(argv))


def environment(pid: int) -> dict[str, str]:
    """A process's environment from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("stopped_by", ["ctrl-c", "sigterm"])
def test_demo_with_observability_prints_urls_points_the_demo_at_the_collector_and_cleans_up(
    otel_binaries: dict[Binary, Path], tmp_path: Path, stopped_by: str
) -> None:
    log = tmp_path / "demo.log"
    # What hack/demo --observability runs.
    argv = [sys.executable, "-m", "hack.otel.stack", "demo", "--dir", str(tmp_path / "stack")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--", "--listen-port", str(free_port())],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            | {"PYTHONPATH": str(ROOT)},
            # Its own process group, as a terminal's foreground job: Ctrl-C reaches all of it.
            start_new_session=True,
        )
    try:
        poll(
            lambda: "Open this link" in log.read_text(),
            timeout=90,
            what=f"the stack's URLs and the demo's link ({log})",
        )
        printed = log.read_text()
        urls = dict(re.findall(r"^  (\S.*?\S)\s{2,}(http://\S+)$", printed, re.MULTILINE))
        prometheus = urls["Prometheus"].rstrip("/")
        started = children(process.pid)
        (demo_pid,) = [pid for pid in started if is_demo(pid)]
        env = environment(demo_pid)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == urls["OTLP gRPC (collector)"]
        assert env["OTEL_SERVICE_NAME"] == "ec2-terminal-demo"
        up = 'up{pod="ec2-terminal-demo", namespace="local"} == 1'
        poll(
            lambda: httpx.get(f"{prometheus}/api/v1/query", params={"query": up}).json()["data"][
                "result"
            ],
            timeout=60,
            what="Prometheus scraping the demo",
        )
        if stopped_by == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    finally:
        stop(process)
    assert code == (128 + signal.SIGTERM if stopped_by == "sigterm" else 0), log.read_text()
    # The stack and the demo are gone with it.
    assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []


# ---------------------------------------------------------------- the cluster


def test_the_kustomization_applies_and_every_pod_passes_restricted_admission(
    kube_cluster: KubeCluster,
) -> None:
    path = str(SHIPPED)
    try:
        # A server-side dry run validates every object against the API server's schemas and
        # admission, but namespaced ones only once their namespace exists.
        kube_cluster.kubectl("apply", "--server-side", "-f", str(SHIPPED / "namespace.yaml"))
        kube_cluster.kubectl("apply", "-k", path, "--server-side", "--dry-run=server")
        kube_cluster.kubectl("apply", "-k", path, "--server-side", timeout=120)

        def status(kind: str, name: str) -> dict[str, Any]:
            found: dict[str, Any] = kube_cluster.kubectl_json(
                "get", kind, name, namespace=NAMESPACE
            )
            return dict(found.get("status", {}))

        wait_for(
            lambda: status("daemonset", "otel-collector").get("numberReady") == 2,
            timeout=90,
            message="the collector on both nodes",
        )
        for name in ("jaeger", "prometheus", "grafana"):

            def available(deployment: str = name) -> bool:
                return status("deployment", deployment).get("readyReplicas") == 1

            wait_for(available, timeout=90, message=f"deployment {name}")
        collector = f"system:serviceaccount:{NAMESPACE}:otel-collector"
        prometheus = f"system:serviceaccount:{NAMESPACE}:prometheus"
        for who, verb, resource, allowed in [
            (collector, "watch", "pods", "yes"),
            (collector, "list", "replicasets.apps", "yes"),
            (collector, "get", "namespaces", "yes"),
            (collector, "get", "secrets", "no"),
            (collector, "patch", "pods", "no"),
            (prometheus, "list", "pods", "yes"),
            (prometheus, "get", "secrets", "no"),
            (f"system:serviceaccount:{NAMESPACE}:grafana", "list", "pods", "no"),
        ]:
            answer = kube_cluster.kubectl(
                "auth", "can-i", verb, resource, "--all-namespaces", f"--as={who}", check=False
            )
            assert answer.strip() == allowed, f"{who} {verb} {resource}: {answer}"
    finally:
        kube_cluster.kubectl("delete", "-k", path, "--ignore-not-found", "--wait=true", timeout=180)
