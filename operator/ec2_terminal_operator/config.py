"""The operator's own settings: one frozen object built at startup and passed down."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ec2_terminal_operator import policy
from ec2_terminal_operator.network import NetworkSettings
from ec2_terminal_operator.policy import IngressPolicy, PodPolicy, PolicyError

PREFIX = "EC2_TERMINAL_OPERATOR_"
T = TypeVar("T")

DEFAULT_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Settings of the operator process (not of one session)."""

    # hack/image's tag of the project's image (docs/image.md); the chart names its own.
    session_image: str = "localhost/ec2-terminal:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    # How often each session is re-checked: pod readiness, activity, expiry, the Secret.
    resync_seconds: float = 5.0
    # Threads running reconcile passes: a first pass waits on about nine API calls, so
    # throughput at scale is set by concurrency rather than CPU.
    workers: int = 48
    listen_port: int = 8000
    service_port: int = 80
    # nginx closes idle proxied connections after 60 s by default, which would cut a quiet
    # terminal; WebSockets need far longer read/send timeouts.
    ingress_timeout_seconds: int = 3600
    run_as_user: int = 10001
    # The cluster's DNS domain, for the Service names the session server answers to.
    cluster_domain: str = "cluster.local"
    default_resources: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_RESOURCES)
    )
    # What sessions may ask for (the chart's values); the defaults allow the least.
    pod_policy: PodPolicy = dataclasses.field(default_factory=PodPolicy)
    ingress: IngressPolicy = dataclasses.field(default_factory=IngressPolicy)
    network: NetworkSettings = dataclasses.field(default_factory=NetworkSettings)
    # The administrator's additions to every session pod (the chart's session.env and
    # session.podAnnotations: the OTLP endpoint, Prometheus scrape annotations).
    session_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    session_pod_annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Reads EC2_TERMINAL_OPERATOR_* over the defaults; a ValueError names a bad one."""
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default: T, kind: Callable[[str], T]) -> T:
            raw = env.get(PREFIX + name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except PolicyError as exc:
                raise ValueError(f"{PREFIX}{name}: {exc}") from None
            except ValueError:
                what = getattr(kind, "__name__", "value")
                raise ValueError(f"{PREFIX}{name} must be a {what}, not {raw!r}") from None

        pod_policy = PodPolicy(
            allowed_images=get("ALLOWED_IMAGES", (), policy.parse_images),
            allowed_node_selectors=get("ALLOWED_NODE_SELECTORS", {}, policy.parse_node_selectors),
            allowed_tolerations=get("ALLOWED_TOLERATIONS", (), policy.parse_tolerations),
            trust_ssh_auth_secrets=get("TRUST_SSH_AUTH_SECRETS", True, _boolean),
        )
        ingress = IngressPolicy(
            session_domain=get("SESSION_DOMAIN", None, policy.parse_domain),
            session_tls=get("SESSION_TLS", False, _boolean),
            allowed_hosts=get("ALLOWED_HOSTS", (), policy.parse_host_patterns),
            class_name=get("INGRESS_CLASS_NAME", None, policy.parse_class_name),
            allowed_class_names=get("ALLOWED_INGRESS_CLASSES", (), policy.parse_class_names),
            allow_shared_origin=get("ALLOW_SHARED_ORIGIN", False, _boolean),
        )
        return cls(
            session_image=get("SESSION_IMAGE", defaults.session_image, str),
            image_pull_policy=get("IMAGE_PULL_POLICY", defaults.image_pull_policy, str),
            resync_seconds=get("RESYNC_SECONDS", defaults.resync_seconds, float),
            workers=get("WORKERS", defaults.workers, int),
            ingress_timeout_seconds=get(
                "INGRESS_TIMEOUT_SECONDS", defaults.ingress_timeout_seconds, int
            ),
            cluster_domain=get("CLUSTER_DOMAIN", defaults.cluster_domain, str),
            pod_policy=pod_policy,
            ingress=ingress,
            network=get("NETWORK_POLICY", defaults.network, NetworkSettings.parse),
            session_env=get("SESSION_ENV", {}, parse_session_env),
            session_pod_annotations=get("SESSION_POD_ANNOTATIONS", {}, parse_pod_annotations),
        )


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(raw)
    return lowered == "true"


_boolean.__name__ = "boolean (true or false)"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The server's configuration is the operator's: an extra variable must not change it.
_OPERATOR_ENV = ("EC2_TERMINAL_", "HOME")
# Except what the terminal offers its user, which the operator never reads or decides (the
# chart's session.features): the clipboard, sharing, file transfer, the recording's size.
SESSION_FEATURE_ENV = frozenset(
    {
        "EC2_TERMINAL_CLIPBOARD_OSC52",
        "EC2_TERMINAL_MAX_VIEWERS",
        "EC2_TERMINAL_MAX_UPLOAD_BYTES",
        "EC2_TERMINAL_MAX_DOWNLOAD_BYTES",
        "EC2_TERMINAL_MAX_RECORDING_BYTES",
    }
)
_OPERATOR_ANNOTATIONS = "ec2-terminal.io/"


def _string_map(raw: str, what: str) -> dict[str, str]:
    value = policy.load_json(raw, what) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PolicyError(f"{what} must be a JSON object of strings")
    return {str(k): v for k, v in value.items()}


def parse_session_env(raw: str) -> dict[str, str]:
    """JSON {name: value}: variables added to every session pod; PolicyError if malformed."""
    env = _string_map(raw, "the session pods' extra environment")
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise PolicyError(f"{name!r} is not an environment variable name")
        if name.startswith(_OPERATOR_ENV) and name not in SESSION_FEATURE_ENV:
            raise PolicyError(f"{name} is the operator's to set (the server's configuration)")
    return env


def parse_pod_annotations(raw: str) -> dict[str, str]:
    """JSON {key: value}: annotations added to every session pod; PolicyError if malformed."""
    annotations = _string_map(raw, "the session pods' extra annotations")
    for key in annotations:
        if key.startswith(_OPERATOR_ANNOTATIONS):
            raise PolicyError(f"annotation {key} is the operator's to set")
    return annotations
