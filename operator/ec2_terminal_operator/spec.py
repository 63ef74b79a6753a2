"""A typed, read-only view of a TerminalSession's spec and metadata."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

GROUP = "ec2-terminal.io"
VERSION = "v1alpha1"
PLURAL = "terminalsessions"
KIND = "TerminalSession"


class AccessMethod(enum.Enum):
    """How the session server authenticates to the target."""

    SSH_KEY = "SSHKey"
    EC2_INSTANCE_CONNECT = "EC2InstanceConnect"


class HostKeyPolicy(enum.Enum):
    """How the target's host key is verified."""

    FINGERPRINT = "Fingerprint"
    KNOWN_HOSTS_SECRET = "KnownHostsSecret"  # noqa: S105 (a name, not a secret)
    CONSOLE_OUTPUT = "ConsoleOutput"


class ExposureType(enum.Enum):
    """How browsers reach the session pod."""

    CLUSTER_IP = "ClusterIP"
    INGRESS = "Ingress"


class ExpiryPolicy(enum.Enum):
    """What happens to an expired TerminalSession object."""

    RETAIN = "Retain"
    DELETE = "Delete"


class SpecError(ValueError):
    """The spec cannot be turned into a session (the CRD schema should have refused it)."""


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    """A key inside a Secret in the session's namespace."""

    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class Target:
    """The machine to open a shell on."""

    instance_id: str | None
    host: str | None
    region: str | None
    port: int
    user: str
    access_method: AccessMethod

    def describe(self) -> str:
        """user@machine:port, for kubectl get and log lines."""
        return f"{self.user}@{self.instance_id or self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class HostKey:
    """Host key verification settings."""

    policy: HostKeyPolicy
    fingerprint: str | None
    known_hosts: SecretKeyRef | None


@dataclasses.dataclass(frozen=True)
class Lifetime:
    """Session lifetime bounds, in seconds."""

    max_duration: int
    idle_timeout: int
    startup_timeout: int
    on_expiry: ExpiryPolicy


@dataclasses.dataclass(frozen=True)
class Exposure:
    """How the session is reached from browsers."""

    type: ExposureType
    ingress_class_name: str | None
    host: str | None
    path_prefix: str
    tls_secret_name: str | None
    annotations: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class PodSettings:
    """Overrides for the session pod."""

    image: str | None
    resources: Mapping[str, Any]
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Session:
    """Everything the operator reads from one TerminalSession."""

    name: str
    namespace: str
    uid: str
    generation: int
    target: Target
    credentials: SecretKeyRef | None
    host_key: HostKey
    lifetime: Lifetime
    exposure: Exposure
    pod: PodSettings
    health_check_enabled: bool
    suspend: bool
    # Changing it asks for a fresh token (its value means nothing else).
    token_rotation: str | None = None

    @property
    def layout_path(self) -> str:
        """<pathPrefix>/<namespace>/<name>/: the base path unless a host of its own serves `/`."""
        return f"{self.exposure.path_prefix}/{self.namespace}/{self.name}/"


def _secret_ref(raw: Mapping[str, Any] | None, default_key: str) -> SecretKeyRef | None:
    if not raw:
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("a Secret reference needs a name")
    return SecretKeyRef(name=name, key=str(raw.get("key") or default_key))


def _enum(kind: type[enum.Enum], raw: Any, default: str, field: str) -> Any:
    try:
        return kind(raw if raw is not None else default)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise SpecError(f"{field} must be one of {allowed}, not {raw!r}") from None


def parse_session(body: Mapping[str, Any]) -> Session:
    """Builds the typed view from a TerminalSession body, filling the CRD's defaults."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    raw_target = spec.get("target") or {}
    instance_id = raw_target.get("instanceId")
    host = raw_target.get("host")
    if bool(instance_id) == bool(host):
        raise SpecError("set exactly one of target.instanceId or target.host")
    target = Target(
        instance_id=instance_id,
        host=host,
        region=raw_target.get("region"),
        port=int(raw_target.get("port", 22)),
        user=str(raw_target.get("user", "ec2-user")),
        access_method=_enum(
            AccessMethod, raw_target.get("accessMethod"), "SSHKey", "target.accessMethod"
        ),
    )
    credentials = _secret_ref(spec.get("credentialsSecretRef"), "ssh-privatekey")
    if target.access_method is AccessMethod.SSH_KEY and credentials is None:
        raise SpecError("credentialsSecretRef is required when target.accessMethod is SSHKey")
    raw_host_key = spec.get("hostKey") or {}
    host_key = HostKey(
        policy=_enum(HostKeyPolicy, raw_host_key.get("policy"), "", "hostKey.policy"),
        fingerprint=raw_host_key.get("fingerprint"),
        known_hosts=_secret_ref(raw_host_key.get("knownHostsSecretRef"), "known_hosts"),
    )
    raw_life = spec.get("lifetime") or {}
    lifetime = Lifetime(
        max_duration=int(raw_life.get("maxDurationSeconds", 28800)),
        idle_timeout=int(raw_life.get("idleTimeoutSeconds", 1800)),
        startup_timeout=int(raw_life.get("startupTimeoutSeconds", 300)),
        on_expiry=_enum(ExpiryPolicy, raw_life.get("onExpiry"), "Retain", "lifetime.onExpiry"),
    )
    raw_exp = spec.get("exposure") or {}
    exposure = Exposure(
        type=_enum(ExposureType, raw_exp.get("type"), "ClusterIP", "exposure.type"),
        ingress_class_name=raw_exp.get("ingressClassName"),
        host=raw_exp.get("host"),
        path_prefix=str(raw_exp.get("pathPrefix", "/t")).rstrip("/"),
        tls_secret_name=(raw_exp.get("tls") or {}).get("secretName"),
        annotations=dict(raw_exp.get("annotations") or {}),
    )
    raw_pod = spec.get("pod") or {}
    pod = PodSettings(
        image=raw_pod.get("image"),
        resources=dict(raw_pod.get("resources") or {}),
        node_selector=dict(raw_pod.get("nodeSelector") or {}),
        tolerations=tuple(raw_pod.get("tolerations") or ()),
    )
    return Session(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0)),
        target=target,
        credentials=credentials,
        host_key=host_key,
        lifetime=lifetime,
        exposure=exposure,
        pod=pod,
        health_check_enabled=bool((spec.get("healthCheck") or {}).get("enabled", True)),
        suspend=bool(spec.get("suspend", False)),
        token_rotation=spec.get("tokenRotation") or None,
    )
