"""One health check traced end to end through the real collector: the CronJob's enqueue, Redis,
the Celery worker, the session pod's server and the status patch in one trace, whose id lands in
status.healthCheck.traceId; and the operator's reconcile passes beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_healthcheck import REDIS_PASSWORD, RedisServer, WorkerFactory, run_command
from tests.fixtures_healthcheck import worker_env as base_worker_env
from tests.fixtures_kube import KubeCluster
from tests.fixtures_operator import OperatorFactory
from tests.fixtures_otel import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_PRODUCER,
    SPAN_KIND_SERVER,
    SpanRecord,
    StackFactory,
    jaeger_api,
    read_spans,
)
from tests.fixtures_sshd import Sshd
from tests.support import CLI, poll
from tests.test_healthcheck_cluster import Rig

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def by_name(spans: list[SpanRecord], name: str) -> list[SpanRecord]:
    return [s for s in spans if s.name == name]


def one(spans: list[SpanRecord], name: str, **attributes: Any) -> SpanRecord:
    """The one span called `name` with these attributes."""
    found = [
        s
        for s in by_name(spans, name)
        if all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{name} {attributes}: {[(s.name, s.attributes) for s in found]}"
    return found[0]


def child_of(parent: SpanRecord) -> Callable[[SpanRecord], bool]:
    return lambda span: span.parent_id == parent.span_id and span.trace_id == parent.trace_id


def test_a_health_check_is_one_trace_from_the_enqueue_to_the_status_patch(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_factory: OperatorFactory,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    otel_stack_factory: StackFactory,
    sshd: Sshd,
    tmp_path: Path,
) -> None:
    span_file = tmp_path / "spans.jsonl"
    stack = otel_stack_factory(span_file=span_file)
    # The operator passes these to session pods (the chart's session.env does the same).
    session_env = stack.app_env("ec2-terminal-session")
    network = {"egress": {"ssh": {"ports": [sshd.port]}}}
    operator = operator_factory(
        namespace,
        env={
            "EC2_TERMINAL_OPERATOR_NETWORK_POLICY": json.dumps(network),
            "EC2_TERMINAL_OPERATOR_SESSION_ENV": json.dumps(session_env),
            **stack.app_env("ec2-terminal-operator"),
        },
    )
    rig = Rig(kube_cluster, namespace, redis_server, worker_factory, tmp_path, operator_factory)
    rig.operator, rig.ports = operator, frozenset({sshd.port})
    with rig.session("web", sshd.host, sshd.port, stack.app_env("ec2-terminal-worker")):
        env = base_worker_env(redis_server, tmp_path, {"KUBECONFIG": str(kube_cluster.kubeconfig)})
        env |= stack.app_env("ec2-terminal-health-check")
        done = run_command([CLI, "health-check", f"--namespace={namespace}"], env)
        assert done.returncode == 0, done.stderr
        health = rig.wait_health("web", {})
    assert health["result"] == "ok", health
    trace_id = health["traceId"]
    assert len(trace_id) == 32, health

    wanted = {"health-check", "healthcheck.write_status", "PATCH", "GET /readyz", "EVALSHA"}

    def whole_trace() -> list[SpanRecord]:
        spans = [s for s in read_spans(span_file) if s.trace_id == trace_id]
        return spans if wanted <= {s.name for s in spans} else []

    spans = poll(whole_trace, timeout=60, what=f"trace {trace_id} in {span_file}")

    # health-check -> apply_async -> run (worker) -> check -> write_status -> PATCH.
    root = one(spans, "health-check")
    assert root.parent_id == ""
    assert root.service == "ec2-terminal-health-check"
    assert root.attributes["ec2_terminal.enqueued"] == 1
    publish = one(spans, "apply_async/ec2_terminal.check_session")
    assert child_of(root)(publish)
    assert publish.kind == SPAN_KIND_PRODUCER
    run = one(spans, "run/ec2_terminal.check_session")
    assert child_of(publish)(run)
    assert (run.kind, run.service) == (SPAN_KIND_CONSUMER, "ec2-terminal-worker")
    check = one(spans, "healthcheck.check_session")
    assert child_of(run)(check)
    assert check.attributes["ec2_terminal.session"] == f"{namespace}/web"
    assert check.attributes["ec2_terminal.health.result"] == "ok"
    write = one(spans, "healthcheck.write_status")
    assert child_of(check)(write)
    (patch,) = filter(child_of(write), spans)
    assert (patch.name, patch.kind) == ("PATCH", SPAN_KIND_CLIENT)
    assert str(patch.attributes.get("http.url")).endswith("/terminalsessions/web/status")

    # The worker's probe of /readyz continues in the session pod's server.
    readyz = one(spans, "probe.readyz")
    assert child_of(check)(readyz)
    (request,) = filter(child_of(readyz), spans)
    served = one(spans, "GET /readyz")
    assert child_of(request)(served)
    assert (served.service, served.kind) == ("ec2-terminal-session", SPAN_KIND_SERVER)
    assert served.resource["k8s.pod.name"] == "web"
    assert served.resource["k8s.namespace.name"] == namespace
    # The rest of the downward API's identity: the node, and the pod's uid as the instance.
    assert served.resource["k8s.node.name"]
    assert served.resource["service.instance.id"] == served.resource["k8s.pod.uid"]
    assert one(spans, "probe.ssh_banner").parent_id == check.span_id

    # Redis: the lock's script, enriched with the caller; no value, no password.
    # The first EVALSHA on a fresh connection may meet NOSCRIPT: redis-py loads it and retries.
    locks = [
        s
        for s in by_name(spans, "EVALSHA")
        if s.attributes["code.function"] == "SessionLocks.acquire"
    ]
    assert locks
    assert all(child_of(check)(s) for s in locks)
    lock = locks[-1]
    assert lock.attributes["code.filepath"].endswith("app/healthcheck/lock.py")
    assert isinstance(lock.attributes["code.lineno"], int)
    assert lock.attributes["db.redis.key"] == f"ec2-terminal:health-lock:{namespace}/web"
    assert lock.attributes["db.operation"] == "EVALSHA"
    statement = lock.attributes["db.statement"]
    assert statement.split()[0] == "EVALSHA"
    assert set(statement.split()[1:]) == {"?"}, statement
    # The publish wrote to Redis from the enqueue command's own code.
    pushes = [s for s in spans if s.attributes.get("db.system") == "redis" and s.parent_id]
    assert any(s.attributes.get("code.namespace") == "app.healthcheck.enqueue" for s in pushes), [
        (s.name, s.attributes.get("code.function")) for s in pushes
    ]
    assert REDIS_PASSWORD not in span_file.read_text()

    # Jaeger has the same trace, under every service it crossed.
    def in_jaeger() -> set[str]:
        data = jaeger_api(stack, f"traces/{trace_id}")["data"]
        names = {p["serviceName"] for p in data[0]["processes"].values()} if data else set()
        services = {
            "ec2-terminal-health-check",
            "ec2-terminal-worker",
            "ec2-terminal-session",
        }
        return names if services <= names else set()

    poll(in_jaeger, timeout=60, what=f"trace {trace_id} in Jaeger")

    # The operator traced its passes over the session (and the API calls they made).
    def passes() -> list[SpanRecord]:
        return [
            s
            for s in read_spans(span_file)
            if s.name == "operator.reconcile"
            and s.attributes.get("ec2_terminal.session") == f"{namespace}/web"
        ]

    reconciles = poll(passes, timeout=30, what="operator.reconcile spans")
    assert {s.service for s in reconciles} == {"ec2-terminal-operator"}
    assert "ok" in {s.attributes["ec2_terminal.reconcile.result"] for s in reconciles}
    assert all(s.parent_id == "" for s in reconciles)
