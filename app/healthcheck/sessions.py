"""TerminalSessions as the health checks see them: read, listed, and status.healthCheck written."""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, config

# Imported now, not on first use: the API classes are large modules the client library loads
# lazily, and in each freshly forked pool process that first load took seconds under load.
from kubernetes.client import CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from app.healthcheck.results import HealthRecord, parse_time
from app.telemetry import traced

log = logging.getLogger(__name__)
T = TypeVar("T")

GROUP = "ec2-terminal.io"
VERSION = "v1alpha1"
PLURAL = "terminalsessions"
READY_PHASE = "Ready"
# (connect, read) seconds for every API call: a check never waits on a stuck API server.
REQUEST_TIMEOUT = (5.0, 15.0)
WRITE_ATTEMPTS = 5
# Connection failures below the API: refused, reset, timed out, TLS.
TRANSPORT_ERRORS = (OSError, urllib3.exceptions.HTTPError)


class KubeUnavailable(Exception):
    """The API server could not be asked (a retry may help); the message names the call."""


class WriteOutcome(enum.Enum):
    """What became of a result."""

    WRITTEN = "written"
    STALE = "stale"  # a newer result was already recorded
    GONE = "gone"  # the session was deleted meanwhile


@dataclasses.dataclass(frozen=True)
class SessionView:
    """What a check needs from one TerminalSession."""

    namespace: str
    name: str
    phase: str | None
    enabled: bool
    host: str | None
    instance_id: str | None
    region: str | None
    port: int
    service_name: str | None
    resource_version: str
    health_check: Mapping[str, Any]

    @property
    def ready(self) -> bool:
        """Whether the operator reports the session Ready."""
        return self.phase == READY_PHASE

    @property
    def key(self) -> str:
        """namespace/name, for log lines."""
        return f"{self.namespace}/{self.name}"


def view(body: Mapping[str, Any]) -> SessionView:
    """The fields of a TerminalSession body a check reads."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    target = spec.get("target") or {}
    return SessionView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        phase=status.get("phase"),
        enabled=bool((spec.get("healthCheck") or {}).get("enabled", True)),
        host=target.get("host"),
        instance_id=target.get("instanceId"),
        region=target.get("region"),
        port=int(target.get("port", 22)),
        service_name=status.get("serviceName"),
        resource_version=str(meta.get("resourceVersion", "")),
        health_check=status.get("healthCheck") or {},
    )


@dataclasses.dataclass(frozen=True)
class KubeClients:
    """The two API groups a check talks to."""

    custom: CustomObjectsApi
    core: CoreV1Api

    @classmethod
    def load(cls) -> KubeClients:
        """From the pod's ServiceAccount, else from KUBECONFIG (or ~/.kube/config)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            try:
                # KUBECONFIG as it is now (the library reads it once, when imported).
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.environ.get("KUBECONFIG") or None,
                    client_configuration=configuration,
                )
            except (config.ConfigException, OSError) as exc:
                raise KubeUnavailable(
                    f"no Kubernetes access: not in a pod, and no usable kubeconfig ({exc})"
                ) from None
        api = client.ApiClient(configuration)
        return cls(custom=CustomObjectsApi(api), core=CoreV1Api(api))


def _unavailable(exc: Exception, what: str) -> KubeUnavailable:
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        return KubeUnavailable(f"{what}: HTTP {exc.status} {reason}".rstrip())
    return KubeUnavailable(f"{what}: {exc}")


def _get(read: Callable[[], T], what: str) -> T | None:
    """`read()`, None if the object does not exist; KubeUnavailable if the API cannot answer."""
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _unavailable(exc, f"reading {what}") from None
    except TRANSPORT_ERRORS as exc:
        raise _unavailable(exc, f"reading {what}") from None


def read_session(kube: KubeClients, namespace: str, name: str) -> SessionView | None:
    """The session, or None if it no longer exists."""
    body = _get(
        lambda: kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
        ),
        f"TerminalSession {namespace}/{name}",
    )
    return None if body is None else view(cast("Mapping[str, Any]", body))


def list_sessions(kube: KubeClients, namespace: str | None) -> list[SessionView]:
    """Every TerminalSession in `namespace`, or in all namespaces when None."""
    what = f"listing TerminalSessions in {namespace or 'all namespaces'}"
    try:
        if namespace:
            found = kube.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            found = kube.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT
            )
    except (ApiException, *TRANSPORT_ERRORS) as exc:
        raise _unavailable(exc, what) from None
    items = cast("Mapping[str, Any]", found).get("items", [])
    return [view(item) for item in items]


@dataclasses.dataclass(frozen=True)
class ServiceAddress:
    """Where a session's Service answers: its `http` port, and its ClusterIP if it has one."""

    port: int
    cluster_ip: str | None


def service_address(kube: KubeClients, namespace: str, service: str) -> ServiceAddress | None:
    """The Service's `http` port (else its first) and ClusterIP, or None if it does not exist."""
    svc = _get(
        lambda: kube.core.read_namespaced_service(
            service, namespace, _request_timeout=REQUEST_TIMEOUT
        ),
        f"Service {namespace}/{service}",
    )
    if svc is None:
        return None
    ports = list((svc.spec.ports if svc.spec else None) or [])
    if not ports:
        return None
    chosen = next((p for p in ports if p.name == "http"), ports[0])
    ip = svc.spec.cluster_ip if svc.spec else None
    # A headless Service's clusterIP is the string "None".
    return ServiceAddress(int(chosen.port), ip if ip and ip != "None" else None)


def _newer_recorded(current: Mapping[str, Any], record: HealthRecord) -> bool:
    when = parse_time(current.get("time"))
    return when is not None and when > record.time


@traced("healthcheck.write_status")
def write_health(kube: KubeClients, session: SessionView, record: HealthRecord) -> WriteOutcome:
    """Writes status.healthCheck only, unless a newer result is there already.

    The patch carries the resourceVersion it was decided on, so a result written by another
    check in between makes it fail with a conflict; it is then decided again.
    """
    current = session
    for _ in range(WRITE_ATTEMPTS):
        if _newer_recorded(current.health_check, record):
            log.info(
                "session %s: a newer result (%s) is recorded; keeping it",
                session.key,
                current.health_check.get("time"),
            )
            return WriteOutcome.STALE
        patch = {
            "metadata": {"resourceVersion": current.resource_version},
            "status": {"healthCheck": record.to_status()},
        }
        try:
            kube.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                session.namespace,
                PLURAL,
                session.name,
                patch,
                _request_timeout=REQUEST_TIMEOUT,
            )
            return WriteOutcome.WRITTEN
        except ApiException as exc:
            if exc.status == 404:
                return WriteOutcome.GONE
            if exc.status != 409:
                raise _unavailable(exc, f"writing the health of {session.key}") from None
        except TRANSPORT_ERRORS as exc:
            raise _unavailable(exc, f"writing the health of {session.key}") from None
        fresh = read_session(kube, session.namespace, session.name)
        if fresh is None:
            return WriteOutcome.GONE
        current = fresh
    raise KubeUnavailable(
        f"writing the health of {session.key}: the session changed {WRITE_ATTEMPTS} times meanwhile"
    )
