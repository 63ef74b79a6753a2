"""app/activity.py: activity annotations on the session's own Pod, with its own token."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ec2_terminal_operator import resources
from ec2_terminal_operator.spec import parse_session

from app.activity import (
    ANNOTATION_ACTIVE_CONNECTIONS,
    ANNOTATION_LAST_ACTIVITY,
    ActivityReporter,
    ActivityReportError,
    PodEndpoint,
    annotations_for,
    http_client,
    in_cluster_endpoint,
    interval_from_env,
    pod_patcher,
    run_reporter,
)
from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import session_manifest

T = datetime.datetime(2026, 1, 1, 12, 0, 5, tzinfo=datetime.UTC)


class Recorder:
    """A pod patcher that records what it was asked to send."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[dict[str, str]] = []
        self.fail = fail

    async def __call__(self, annotations: Mapping[str, str]) -> None:
        if self.fail:
            self.fail -= 1
            raise ActivityReportError("HTTP 500: boom")
        self.sent.append(dict(annotations))


def test_annotations_are_rfc3339_utc() -> None:
    assert annotations_for(2, T) == {
        ANNOTATION_ACTIVE_CONNECTIONS: "2",
        ANNOTATION_LAST_ACTIVITY: "2026-01-01T12:00:05Z",
    }
    assert annotations_for(0, T.timestamp())[ANNOTATION_LAST_ACTIVITY] == "2026-01-01T12:00:05Z"
    assert annotations_for(-1, None) == {ANNOTATION_ACTIVE_CONNECTIONS: "0"}


@pytest.mark.anyio
async def test_reports_only_changes() -> None:
    state: list[tuple[int, float | None]] = [(1, T.timestamp())]
    rec = Recorder()
    reporter = ActivityReporter(lambda: state[-1], rec, interval=10)
    assert await reporter.report_once() is True
    assert await reporter.report_once() is False
    state.append((0, T.timestamp() + 30))
    assert await reporter.report_once() is True
    assert [a[ANNOTATION_ACTIVE_CONNECTIONS] for a in rec.sent] == ["1", "0"]


@pytest.mark.anyio
async def test_run_logs_errors_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(fail=1)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise asyncio.CancelledError

    reporter = ActivityReporter(lambda: (1, None), rec, interval=7, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await reporter.run()
    assert waits == [7, 7]
    assert rec.sent == [{ANNOTATION_ACTIVE_CONNECTIONS: "1"}]
    assert "activity report failed: HTTP 500: boom" in caplog.text


def test_settings_from_env() -> None:
    assert interval_from_env({}) == 10
    assert interval_from_env({"EC2_TERMINAL_ACTIVITY_INTERVAL": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="must be seconds"):
        interval_from_env({"EC2_TERMINAL_ACTIVITY_INTERVAL": "often"})
    with pytest.raises(ActivityReportError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_endpoint("p", "ns", {})
    ep = in_cluster_endpoint("p", "ns", {"KUBERNETES_SERVICE_HOST": "fd00::1"})
    assert ep.pod_url == "https://[fd00::1]:443/api/v1/namespaces/ns/pods/p"


# --- against the real API server, with a ServiceAccount token limited to one pod ---


def _ca_file(cluster: KubeCluster, tmp_path: Path) -> Path:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(cluster.ca_certificate())
    return ca


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "ec2-terminal:test"}]},
    }


@pytest.fixture
def session_identity(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> tuple[PodEndpoint, PodEndpoint]:
    """The operator's per-session SA, Role and RoleBinding; endpoints for its pod and another."""
    raw = session_manifest("mine")
    raw["metadata"]["namespace"] = namespace
    session = parse_session(raw)
    kube_cluster.apply(
        [
            _pod("mine"),
            _pod("other"),
            resources.build_service_account(session),
            resources.build_role(session),
            resources.build_role_binding(session),
        ],
        namespace=namespace,
    )
    token = kube_cluster.kubectl(
        "create", "token", resources.rbac_name(session), "--duration=10m", namespace=namespace
    ).strip()
    ca = str(_ca_file(kube_cluster, tmp_path))
    mine = PodEndpoint(kube_cluster.server, namespace, "mine", ca_file=ca, token=token)
    other = PodEndpoint(kube_cluster.server, namespace, "other", ca_file=ca, token=token)
    return mine, other


def _annotations(cluster: KubeCluster, namespace: str, pod: str) -> dict[str, str]:
    obj = cluster.kubectl_json("get", "pod", pod, namespace=namespace)
    return dict(obj["metadata"].get("annotations") or {})


@pytest.mark.cluster
@pytest.mark.anyio
async def test_pod_token_may_patch_only_its_own_pod(
    kube_cluster: KubeCluster, namespace: str, session_identity: tuple[PodEndpoint, PodEndpoint]
) -> None:
    mine, other = session_identity
    async with http_client(mine) as client:
        await pod_patcher(mine, client)(annotations_for(3, T))
        with pytest.raises(ActivityReportError, match="HTTP 403"):
            await pod_patcher(other, client)(annotations_for(3, T))
    got = _annotations(kube_cluster, namespace, "mine")
    assert got[ANNOTATION_ACTIVE_CONNECTIONS] == "3"
    assert got[ANNOTATION_LAST_ACTIVITY] == "2026-01-01T12:00:05Z"
    assert ANNOTATION_ACTIVE_CONNECTIONS not in _annotations(kube_cluster, namespace, "other")


@pytest.mark.cluster
@pytest.mark.anyio
async def test_reporter_follows_the_source(
    kube_cluster: KubeCluster, namespace: str, session_identity: tuple[PodEndpoint, PodEndpoint]
) -> None:
    mine, _ = session_identity
    state: list[tuple[int, float | None]] = [(1, T.timestamp())]

    async def wait_annotation(value: str) -> None:
        def seen() -> bool:
            got = _annotations(kube_cluster, namespace, "mine")
            return got.get(ANNOTATION_ACTIVE_CONNECTIONS) == value

        await asyncio.to_thread(wait_for, seen, 15, 0.1, f"active-connections={value}")

    async with run_reporter(mine, lambda: state[-1], interval=0.2):
        await wait_annotation("1")
        state.append((2, T.timestamp() + 60))
        await wait_annotation("2")
        # On the way out the final state is reported too.
        state.append((0, T.timestamp() + 90))
    await wait_annotation("0")
    got = _annotations(kube_cluster, namespace, "mine")
    assert got[ANNOTATION_LAST_ACTIVITY] == "2026-01-01T12:01:35Z"
    assert json.dumps(got)  # plain strings only
