"""Faults in the control plane, caused for real on the local cluster: the API server and etcd
restarted while sessions are created, the operator SIGKILLed mid-reconcile three times in a
row. End states are correct, nothing is duplicated or lost; convergence times are recorded.
(Redis restarted with checks queued, the worker killed mid-task: test_healthcheck_cluster.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.artifacts import record
from tests.fixtures_kube import KubeCluster, run_hack_cluster, state_dir, wait_for
from tests.fixtures_operator import (
    OperatorFactory,
    key_secret,
    names,
    session_manifest,
)

SELECTOR = "ec2-terminal.io/session"


def tokens(cluster: KubeCluster, namespace: str) -> dict[str, str]:
    """Each session token Secret's name and token."""
    items = cluster.kubectl_json("get", "secret", f"--selector={SELECTOR}", namespace=namespace)
    return {s["metadata"]["name"]: s["data"]["token"] for s in items["items"]}


def phases(cluster: KubeCluster, namespace: str) -> dict[str, str]:
    items = cluster.kubectl_json("get", "terminalsessions", namespace=namespace)["items"]
    return {ts["metadata"]["name"]: ts.get("status", {}).get("phase", "") for ts in items}


def tokens_and_phases(
    cluster: KubeCluster, namespace: str
) -> tuple[dict[str, str], dict[str, str]]:
    """`tokens` and `phases` from one request."""
    items = cluster.kubectl_json("get", "secrets,terminalsessions", namespace=namespace)["items"]
    secrets = {
        s["metadata"]["name"]: s["data"]["token"]
        for s in items
        if s["kind"] == "Secret" and SELECTOR in s["metadata"].get("labels", {})
    }
    sessions = {
        ts["metadata"]["name"]: ts.get("status", {}).get("phase", "")
        for ts in items
        if ts["kind"] == "TerminalSession"
    }
    return secrets, sessions


def converge(cluster: KubeCluster, namespace: str, expected: list[str], timeout: float) -> float:
    """Wait until every session is Ready; return how long that took."""
    started = time.monotonic()

    def ready() -> bool:
        now = phases(cluster, namespace)  # raises, "not yet", while the API server is away
        return sorted(n for n, p in now.items() if p == "Ready") == expected

    wait_for(ready, timeout=timeout, interval=0.5, message=f"{len(expected)} sessions Ready")
    return round(time.monotonic() - started, 1)


def assert_exactly_once(
    cluster: KubeCluster, namespace: str, expected: list[str], before: dict[str, str]
) -> None:
    """One child of each kind per session, and no token minted before the fault replaced."""
    assert names(cluster, namespace, "pod", SELECTOR) == expected
    assert names(cluster, namespace, "service", SELECTOR) == expected
    assert names(cluster, namespace, "secret", SELECTOR) == [f"{n}-token" for n in expected]
    after = tokens(cluster, namespace)
    for name, token in before.items():
        assert after[name] == token, f"{name} was replaced"
    for ts in cluster.kubectl_json("get", "terminalsessions", namespace=namespace)["items"]:
        assert ts["status"]["observedGeneration"] == ts["metadata"]["generation"]


def restart(component: str, *flags: str) -> float:
    """Restart a component of the test's own cluster; return how long it was away."""
    if os.environ.get("EC2_TERMINAL_KUBECONFIG"):
        pytest.fail("restarting the control plane needs the test's own cluster, not a foreign one")
    started = time.monotonic()
    run_hack_cluster("restart", component, *flags)
    return round(time.monotonic() - started, 1)


@contextlib.contextmanager
def pods_held_pending() -> Iterator[None]:
    """kwok stopped (SIGSTOP): no pod turns Ready, so no session can, until it goes on.

    The operator works on every session at once and brings dozens Ready within a second of its
    first child; with kwok held, a fault after the first children is sure to land mid-work.
    """
    if os.environ.get("EC2_TERMINAL_KUBECONFIG"):
        pytest.fail("holding kwok needs the test's own cluster, not a foreign one")
    state = json.loads((state_dir() / "state.json").read_text())
    pid = int(state["processes"]["kwok"]["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def expected_names(count: int) -> list[str]:
    return sorted(f"s{i}" for i in range(count))


def start_sessions(cluster: KubeCluster, namespace: str, count: int) -> None:
    cluster.apply(key_secret(), namespace=namespace)
    cluster.apply([session_manifest(f"s{i}") for i in range(count)], namespace=namespace)


def restart_while_creating(
    cluster: KubeCluster,
    namespace: str,
    operator_factory: OperatorFactory,
    count: int,
    component: str,
    *flags: str,
) -> dict[str, Any]:
    """Restart `component` while `count` sessions are created; check and return the figures."""
    operator = operator_factory(namespace)
    with pods_held_pending():
        start_sessions(cluster, namespace, count)
        wait_for(
            lambda: ": created" in operator.log(),
            timeout=60,
            interval=0.05,
            message="the operator at work",
        )
        before, now = tokens_and_phases(cluster, namespace)
        ready_at_fault = sum(p == "Ready" for p in now.values())
        away = restart(component, *flags)
    took = converge(cluster, namespace, expected_names(count), timeout=240)
    assert_exactly_once(cluster, namespace, expected_names(count), before)
    assert ready_at_fault < count, "the fault came after the work was done"
    return {
        "sessions": count,
        "ready_at_fault": ready_at_fault,
        "tokens_at_fault": len(before),
        "away_s": away,
        "converged_after_restart_s": took,
    }


def test_api_server_killed_while_20_sessions_are_created(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    figures = restart_while_creating(
        kube_cluster, namespace, operator_factory, 20, "kube-apiserver", "--kill"
    )
    record("control_plane_apiserver_kill", figures)


def test_etcd_restarted_while_sessions_are_created(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    figures = restart_while_creating(kube_cluster, namespace, operator_factory, 10, "etcd")
    # The operator's watches came back too: a session created now is served.
    kube_cluster.apply(session_manifest("late"), namespace=namespace)
    everyone = sorted([*expected_names(figures["sessions"]), "late"])
    figures["new_session_ready_s"] = converge(kube_cluster, namespace, everyone, 120)
    record("control_plane_etcd_restart", figures)


def test_operator_killed_mid_reconcile_three_times_in_a_row(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    count = 20
    start_sessions(kube_cluster, namespace, count)
    pods_at_kill: list[int] = []
    for _ in range(3):
        operator = operator_factory(namespace)
        # Killed once its log shows it created a few children: in the middle of the work.
        wait_for(
            lambda op=operator: op.log().count(": created") >= 5,  # type: ignore[misc]
            timeout=60,
            interval=0.01,
            message="the operator at work",
        )
        operator.kill()
        pods_at_kill.append(len(names(kube_cluster, namespace, "pod", SELECTOR)))
        ready = [n for n, p in phases(kube_cluster, namespace).items() if p == "Ready"]
        assert len(ready) < count, f"not killed mid-reconcile: pods {pods_at_kill}"
    before = tokens(kube_cluster, namespace)
    operator_factory(namespace)
    took = converge(kube_cluster, namespace, expected_names(count), timeout=180)
    assert_exactly_once(kube_cluster, namespace, expected_names(count), before)
    record(
        "control_plane_operator_kills",
        {
            "sessions": count,
            "pods_at_each_kill": pods_at_kill,
            "converged_after_last_start_s": took,
        },
    )
