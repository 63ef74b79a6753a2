"""app/kube/activity.py: activity on the session's Lease, with a token that can do nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ec2_terminal_operator import resources
from ec2_terminal_operator.spec import parse_session

from app.cli.main import build_parser
from app.cli.serve import settings_from_args
from app.errors import ConfigurationError
from app.kube.activity import (
    ANNOTATION_ACTIVE_CONNECTIONS,
    ANNOTATION_LAST_ACTIVITY,
    ActivityReporter,
    ActivityReportError,
    LeaseEndpoint,
    annotations_for,
    endpoint_for,
    http_client,
    in_cluster_endpoint,
    lease_writer,
    run_reporter,
)
from app.settings import Settings
from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import can_i, session_manifest

T = datetime.datetime(2026, 1, 1, 12, 0, 5, tzinfo=datetime.UTC)


class Recorder:
    """An activity writer that records what it was asked to send."""

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


def test_the_in_cluster_address() -> None:
    with pytest.raises(ActivityReportError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_endpoint("l", "uid", "ns", {})
    ep = in_cluster_endpoint("l", "uid", "ns", {"KUBERNETES_SERVICE_HOST": "fd00::1"})
    assert ep.lease_url == (
        "https://[fd00::1]:443/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"
    )
    assert ep.token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_endpoint_comes_from_the_operator_set_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator's variables reach the reporter as `serve` flags, through the settings.
    for name, value in {
        "EC2_TERMINAL_POD_NAME": "web",
        "EC2_TERMINAL_POD_NAMESPACE": "team-a",
        "EC2_TERMINAL_POD_UID": "u-1",
        "EC2_TERMINAL_ACTIVITY_LEASE": "web-activity",
        "EC2_TERMINAL_ACTIVITY_INTERVAL": "2.5",
        "EC2_TERMINAL_SERVICE_ACCOUNT_DIR": "/run/sa",
    }.items():
        monkeypatch.setenv(name, value)
    in_pod = settings_from_args(build_parser().parse_args(["serve"]))
    assert in_pod.activity_interval == 2.5
    kube = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    ep = endpoint_for(in_pod, kube)
    assert ep is not None
    assert (ep.lease_name, ep.holder, ep.namespace) == ("web-activity", "u-1", "team-a")
    assert (ep.token_file, ep.ca_file) == ("/run/sa/token", "/run/sa/ca.crt")
    with pytest.raises(ActivityReportError, match="--activity-lease and --pod-uid"):
        endpoint_for(dataclasses.replace(in_pod, pod_uid=None), kube)
    assert endpoint_for(Settings(), kube) is None


def test_a_bad_interval_is_refused_like_a_bad_flag() -> None:
    with pytest.raises(ConfigurationError, match="--activity-interval must be positive"):
        Settings(activity_interval=0)


# --- against the real API server, with the session's own ServiceAccount token ---


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


def _lease(name: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}}


# The session's Lease, another Lease, and the session's ServiceAccount token.
Identity = tuple[LeaseEndpoint, LeaseEndpoint, str]


@pytest.fixture
def session_identity(kube_cluster: KubeCluster, namespace: str, tmp_path: Path) -> Identity:
    """The operator's per-session objects; endpoints for its Lease and another; its token."""
    raw = session_manifest("mine")
    raw["metadata"]["namespace"] = namespace
    session = parse_session(raw)
    kube_cluster.apply(
        [
            _pod("mine"),
            _lease("other-activity"),
            resources.build_lease(session),
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
    lease = resources.lease_name(session)
    mine = LeaseEndpoint(kube_cluster.server, namespace, lease, "pod-uid", ca_file=ca, token=token)
    other = dataclasses.replace(mine, lease_name="other-activity")
    return mine, other, token


def _lease_of(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    lease: dict[str, Any] = cluster.kubectl_json("get", "lease", name, namespace=namespace)
    return lease


def _annotations(cluster: KubeCluster, namespace: str, lease: str) -> dict[str, str]:
    return dict(_lease_of(cluster, namespace, lease)["metadata"].get("annotations") or {})


@pytest.mark.cluster
@pytest.mark.anyio
async def test_session_token_cannot_patch_its_own_pod(
    kube_cluster: KubeCluster, namespace: str, session_identity: Identity
) -> None:
    """Issue 9.3: a pod able to patch its own Pod could relabel it or swap its image."""
    mine, _, token = session_identity
    for verb in ("patch", "update", "delete"):
        assert not can_i(kube_cluster, namespace, "mine-session", verb, "pods/mine"), verb
    # And with the real token, as the server would send it.
    async with http_client(mine) as client:
        response = await client.patch(
            f"{kube_cluster.server}/api/v1/namespaces/{namespace}/pods/mine",
            content=json.dumps({"metadata": {"labels": {"ec2-terminal.io/session": "x"}}}),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/merge-patch+json",
            },
        )
    assert response.status_code == 403


@pytest.mark.cluster
@pytest.mark.anyio
async def test_session_token_writes_only_its_own_lease(
    kube_cluster: KubeCluster, namespace: str, session_identity: Identity
) -> None:
    mine, other, _ = session_identity
    written = datetime.datetime(2026, 1, 1, 12, 0, 7, 250000, tzinfo=datetime.UTC)
    async with http_client(mine) as client:
        await lease_writer(mine, client, clock=lambda: written)(annotations_for(3, T))
        with pytest.raises(ActivityReportError, match="HTTP 403"):
            await lease_writer(other, client)(annotations_for(3, T))
    lease = _lease_of(kube_cluster, namespace, "mine-activity")
    got = lease["metadata"]["annotations"]
    assert got[ANNOTATION_ACTIVE_CONNECTIONS] == "3"
    assert got[ANNOTATION_LAST_ACTIVITY] == "2026-01-01T12:00:05Z"
    assert lease["spec"]["holderIdentity"] == "pod-uid"
    assert lease["spec"]["renewTime"] == "2026-01-01T12:00:07.250000Z"
    assert ANNOTATION_ACTIVE_CONNECTIONS not in _annotations(
        kube_cluster, namespace, "other-activity"
    )
    # Nothing else in the namespace: not even reading its own pod or listing Leases.
    for verb, what in (("get", "pods/mine"), ("list", "leases"), ("get", "secrets/ssh-key")):
        assert not can_i(kube_cluster, namespace, "mine-session", verb, what), (verb, what)
    assert can_i(kube_cluster, namespace, "mine-session", "patch", "leases/mine-activity")


@pytest.mark.cluster
@pytest.mark.anyio
async def test_reporter_follows_the_source(
    kube_cluster: KubeCluster, namespace: str, session_identity: Identity
) -> None:
    mine, _, _ = session_identity
    state: list[tuple[int, float | None]] = [(1, T.timestamp())]

    async def wait_annotation(value: str) -> None:
        def seen() -> bool:
            got = _annotations(kube_cluster, namespace, "mine-activity")
            return got.get(ANNOTATION_ACTIVE_CONNECTIONS) == value

        await asyncio.to_thread(wait_for, seen, 15, 0.1, f"active-connections={value}")

    async with run_reporter(mine, lambda: state[-1], interval=0.2):
        await wait_annotation("1")
        state.append((2, T.timestamp() + 60))
        await wait_annotation("2")
        # On the way out the final state is reported too.
        state.append((0, T.timestamp() + 90))
    await wait_annotation("0")
    got = _annotations(kube_cluster, namespace, "mine-activity")
    assert got[ANNOTATION_LAST_ACTIVITY] == "2026-01-01T12:01:35Z"
    assert json.dumps(got)  # plain strings only
