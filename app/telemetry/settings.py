"""What a process's tracing is configured to do, read from the standard OTEL_* variables.

Pure: nothing here imports OpenTelemetry, so deciding that tracing is off costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from app.errors import ConfigurationError

# The prototype's switch; the OTEL_* variables below are the specification's.
ENABLE_OTEL = "ENABLE_OTEL"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
SDK_DISABLED = "OTEL_SDK_DISABLED"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
SAMPLER = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
# The pod's identity from the downward API (the operator sets the first three on session
# pods, the chart all four on its workloads).
POD_NAME = "EC2_TERMINAL_POD_NAME"
POD_NAMESPACE = "EC2_TERMINAL_POD_NAMESPACE"
POD_UID = "EC2_TERMINAL_POD_UID"
NODE_NAME = "EC2_TERMINAL_NODE_NAME"
E = TypeVar("E", bound=StrEnum)


class Component(StrEnum):
    """The processes that trace, each with its default service.name."""

    SESSION_SERVER = "ec2-terminal-session"
    DEMO = "ec2-terminal-demo"
    OPERATOR = "ec2-terminal-operator"
    WORKER = "ec2-terminal-worker"
    HEALTH_CHECK = "ec2-terminal-health-check"


class ExportProtocol(StrEnum):
    """OTLP transports (http/json has no Python exporter)."""

    GRPC = "grpc"
    HTTP = "http/protobuf"


class Exporter(StrEnum):
    """Values of OTEL_TRACES_EXPORTER."""

    OTLP = "otlp"
    CONSOLE = "console"
    NONE = "none"


class SamplerName(StrEnum):
    """Values of OTEL_TRACES_SAMPLER."""

    ALWAYS_ON = "always_on"
    ALWAYS_OFF = "always_off"
    RATIO = "traceidratio"
    PARENT_ALWAYS_ON = "parentbased_always_on"
    PARENT_ALWAYS_OFF = "parentbased_always_off"
    PARENT_RATIO = "parentbased_traceidratio"


@dataclasses.dataclass(frozen=True)
class PodIdentity:
    """Where the process runs, as resource attributes (k8s.pod.name, ...)."""

    pod_name: str | None = None
    namespace: str | None = None
    pod_uid: str | None = None
    node_name: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PodIdentity:
        """From the downward API variables; absent ones stay None."""
        return cls(
            pod_name=env.get(POD_NAME) or None,
            namespace=env.get(POD_NAMESPACE) or None,
            pod_uid=env.get(POD_UID) or None,
            node_name=env.get(NODE_NAME) or None,
        )

    def attributes(self) -> dict[str, str]:
        """The semantic-convention attributes that are known."""
        pairs = {
            "k8s.pod.name": self.pod_name,
            "k8s.namespace.name": self.namespace,
            "k8s.pod.uid": self.pod_uid,
            "k8s.node.name": self.node_name,
        }
        return {key: value for key, value in pairs.items() if value}


@dataclasses.dataclass(frozen=True)
class TelemetrySettings:
    """One process's tracing configuration; `enabled` False means nothing else matters."""

    component: Component
    enabled: bool
    exporter: Exporter = Exporter.OTLP
    protocol: ExportProtocol = ExportProtocol.HTTP
    # None: the exporter's own default (or its OTEL_EXPORTER_OTLP_* variables).
    endpoint: str | None = None
    sampler: SamplerName = SamplerName.PARENT_ALWAYS_ON
    ratio: float = 1.0
    identity: PodIdentity = dataclasses.field(default_factory=PodIdentity)

    @classmethod
    def from_env(
        cls,
        component: Component,
        env: Mapping[str, str] | None = None,
        identity: PodIdentity | None = None,
    ) -> TelemetrySettings:
        """Reads the environment; ConfigurationError names a variable with a bad value."""
        env = os.environ if env is None else env
        exporter = _choice(env, TRACES_EXPORTER, Exporter, Exporter.OTLP)
        if not tracing_wanted(env) or exporter is Exporter.NONE:
            return cls(component, enabled=False)
        protocol = _choice(
            env,
            TRACES_PROTOCOL,
            ExportProtocol,
            _choice(env, PROTOCOL, ExportProtocol, ExportProtocol.HTTP),
        )
        sampler = _choice(env, SAMPLER, SamplerName, SamplerName.PARENT_ALWAYS_ON)
        return cls(
            component,
            enabled=True,
            exporter=exporter,
            protocol=protocol,
            endpoint=_endpoint(env, protocol),
            sampler=sampler,
            ratio=_ratio(env) if sampler in (SamplerName.RATIO, SamplerName.PARENT_RATIO) else 1.0,
            identity=identity or PodIdentity.from_env(env),
        )

    @property
    def shown_endpoint(self) -> str:
        """The endpoint for a log line: without any user or password in it."""
        if self.endpoint is None:
            return "the exporter's default endpoint"
        parts = urllib.parse.urlsplit(self.endpoint)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def tracing_wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for tracing.

    ENABLE_OTEL decides when set; without it an OTLP endpoint turns tracing on;
    OTEL_SDK_DISABLED=true turns it off whatever else says.
    """
    if env.get(SDK_DISABLED, "").strip().lower() == "true":
        return False
    switch = env.get(ENABLE_OTEL)
    if switch is not None:
        word = switch.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigurationError(f"{ENABLE_OTEL} must be true or false, not {switch!r}")
    return bool(env.get(ENDPOINT) or env.get(TRACES_ENDPOINT))


def _choice(env: Mapping[str, str], name: str, kind: type[E], default: E) -> E:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ConfigurationError(f"{name} must be one of {allowed}, not {raw!r}") from None


def _endpoint(env: Mapping[str, str], protocol: ExportProtocol) -> str | None:
    """An endpoint to hand the exporter, or None to let it read its own variables.

    The prototype documented OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces already on it; the
    HTTP exporter would append a second one, so such a value is used as the traces endpoint.
    """
    if env.get(TRACES_ENDPOINT):
        return env[TRACES_ENDPOINT]
    generic = env.get(ENDPOINT, "")
    if protocol is ExportProtocol.HTTP and generic.rstrip("/").endswith("/v1/traces"):
        return generic
    return None


def _ratio(env: Mapping[str, str]) -> float:
    raw = env.get(SAMPLER_ARG, "").strip()
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigurationError(f"{SAMPLER_ARG} must be a number from 0 to 1, not {raw!r}")
    return ratio
