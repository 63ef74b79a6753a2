"""Pure builders: the manifests of a session's children, computed from its spec."""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ec2_terminal_operator import ingress_annotations, origin
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import (
    AccessMethod,
    ExposureType,
    HostKeyPolicy,
    SecretKeyRef,
    Session,
)

LABEL_SESSION = "ec2-terminal.io/session"
ANNOTATION_LAST_ACTIVITY = "ec2-terminal.io/last-activity"
ANNOTATION_ACTIVE_CONNECTIONS = "ec2-terminal.io/active-connections"
ANNOTATION_CONFIG_HASH = "ec2-terminal.io/config-hash"
ANNOTATION_POD_HASH = "ec2-terminal.io/pod-hash"
TOKEN_KEY = "token"  # noqa: S105 (a name, not a secret)

TOKEN_DIR = "/var/run/ec2-terminal/token"  # noqa: S105 (a name, not a secret)
KEY_DIR = "/var/run/ec2-terminal/ssh"
KNOWN_HOSTS_DIR = "/var/run/ec2-terminal/known-hosts"
RECORDINGS_DIR = "/var/lib/ec2-terminal/recordings"
CONTAINER_NAME = "session"

_ACCESS_METHODS = {
    AccessMethod.SSH_KEY: "ssh-key",
    AccessMethod.EC2_INSTANCE_CONNECT: "instance-connect",
}
_HOST_KEY_POLICIES = {
    HostKeyPolicy.FINGERPRINT: "fingerprint",
    HostKeyPolicy.KNOWN_HOSTS_SECRET: "known-hosts",
    HostKeyPolicy.CONSOLE_OUTPUT: "console-output",
}


def token_secret_name(session: Session) -> str:
    """Name of the Secret holding the session's access token."""
    return f"{session.name}-token"


def pod_name(session: Session) -> str:
    """Name of the session pod (fixed, so a restarted operator finds it again)."""
    return session.name


def service_name(session: Session) -> str:
    """Name of the session Service."""
    return session.name


def ingress_name(session: Session) -> str:
    """Name of the session Ingress."""
    return session.name


def lease_name(session: Session) -> str:
    """Name of the Lease the session pod reports its activity on."""
    return f"{session.name}-activity"


def rbac_name(session: Session) -> str:
    """Name of the session's ServiceAccount, Role and RoleBinding."""
    return f"{session.name}-session"


def labels(session: Session) -> dict[str, str]:
    """Labels on every child; the session label selects the pod and feeds the pod index."""
    return {
        "app.kubernetes.io/name": "ec2-terminal",
        "app.kubernetes.io/component": "session",
        "app.kubernetes.io/managed-by": "ec2-terminal-operator",
        LABEL_SESSION: session.name,
    }


def base_path(session: Session, config: OperatorConfig) -> str:
    """The URL path the session is served under, with a trailing slash."""
    route = origin.plan(session, config.ingress)
    return route.base_path if route is not None else session.layout_path


def session_url(session: Session, config: OperatorConfig) -> str:
    """The address a person opens (without the token)."""
    route = origin.plan(session, config.ingress)
    if route is not None:
        if route.host is None:
            return route.base_path
        return f"{'https' if route.https else 'http'}://{route.host}{route.base_path}"
    port = "" if config.service_port == 80 else f":{config.service_port}"
    host = f"{service_name(session)}.{session.namespace}.svc"
    return f"http://{host}{port}{session.layout_path}"


def build_token_secret(session: Session, token: str) -> dict[str, Any]:
    """The Secret with the random token a browser presents once."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": token_secret_name(session), "labels": labels(session)},
        "type": "Opaque",
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def build_lease(session: Session) -> dict[str, Any]:
    """The Lease the session pod writes its activity into (annotations, holder, renewTime)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease_name(session), "labels": labels(session)},
        "spec": {},
    }


def build_service_account(session: Session) -> dict[str, Any]:
    """The pod's own identity, used only to report activity on the session's Lease."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": rbac_name(session), "labels": labels(session)},
        "automountServiceAccountToken": False,
    }


def build_role(session: Session) -> dict[str, Any]:
    """Least privilege: write this session's Lease, nothing else (not even its own Pod)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": rbac_name(session), "labels": labels(session)},
        "rules": [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": [lease_name(session)],
                "verbs": ["get", "update", "patch"],
            }
        ],
    }


def build_role_binding(session: Session) -> dict[str, Any]:
    """Binds the session Role to the session ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": rbac_name(session), "labels": labels(session)},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": rbac_name(session),
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": rbac_name(session),
                "namespace": session.namespace,
            }
        ],
    }


def allowed_origins(session: Session, config: OperatorConfig) -> list[str]:
    """Browser origins the server accepts besides its own Host."""
    route = origin.plan(session, config.ingress)
    if route is None or route.host is None:
        return []
    return [f"{'https' if route.https else 'http'}://{route.host}"]


def allowed_hosts(session: Session, config: OperatorConfig) -> list[str] | None:
    """Host headers the server answers (DNS rebinding); None: any, on the shared origin.

    The Ingress host, and the Service's in-cluster names. Requests to an IP address (the
    kubelet's probes) are always allowed by the server.
    """
    route = origin.plan(session, config.ingress)
    if route is not None and route.host is None:
        return None  # host-less Ingress: whatever host the controller serves
    svc, ns = service_name(session), session.namespace
    names = [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.{config.cluster_domain}"]
    return ([route.host] if route is not None and route.host else []) + names


def mounted_key(session: Session) -> SecretKeyRef | None:
    """The private key Secret the pod mounts (SSHKey access only)."""
    if session.target.access_method is AccessMethod.SSH_KEY:
        return session.credentials
    return None


def mounted_known_hosts(session: Session) -> SecretKeyRef | None:
    """The known_hosts Secret the pod mounts (KnownHostsSecret policy only)."""
    if session.host_key.policy is HostKeyPolicy.KNOWN_HOSTS_SECRET:
        return session.host_key.known_hosts
    return None


def build_env(session: Session, config: OperatorConfig) -> list[dict[str, Any]]:
    """The server's EC2_TERMINAL_* configuration (the `ec2-terminal serve` contract)."""
    target = session.target
    plain: dict[str, str] = {}
    if target.host:
        plain["EC2_TERMINAL_HOST"] = target.host
    if target.instance_id:
        plain["EC2_TERMINAL_INSTANCE_ID"] = target.instance_id
    if target.region:
        plain["EC2_TERMINAL_REGION"] = target.region
    plain["EC2_TERMINAL_PORT"] = str(target.port)
    plain["EC2_TERMINAL_USER"] = target.user
    plain["EC2_TERMINAL_ACCESS_METHOD"] = _ACCESS_METHODS[target.access_method]
    key = mounted_key(session)
    if key is not None:
        plain["EC2_TERMINAL_KEY_FILE"] = f"{KEY_DIR}/{key.key}"
    host_key = session.host_key
    plain["EC2_TERMINAL_HOST_KEY_POLICY"] = _HOST_KEY_POLICIES[host_key.policy]
    if host_key.policy is HostKeyPolicy.FINGERPRINT and host_key.fingerprint:
        plain["EC2_TERMINAL_HOST_KEY_FINGERPRINT"] = host_key.fingerprint
    known_hosts = mounted_known_hosts(session)
    if known_hosts is not None:
        plain["EC2_TERMINAL_KNOWN_HOSTS"] = f"{KNOWN_HOSTS_DIR}/{known_hosts.key}"
    plain["EC2_TERMINAL_BASE_PATH"] = base_path(session, config)
    plain["EC2_TERMINAL_TOKEN_FILE"] = f"{TOKEN_DIR}/{TOKEN_KEY}"
    plain["EC2_TERMINAL_LISTEN_HOST"] = "0.0.0.0"
    plain["EC2_TERMINAL_LISTEN_PORT"] = str(config.listen_port)
    plain["EC2_TERMINAL_IDLE_TIMEOUT"] = str(session.lifetime.idle_timeout)
    plain["EC2_TERMINAL_MAX_DURATION"] = str(session.lifetime.max_duration)
    origins = allowed_origins(session, config)
    if origins:
        plain["EC2_TERMINAL_ALLOWED_ORIGINS"] = ",".join(origins)
    hosts = allowed_hosts(session, config)
    if hosts is not None:
        plain["EC2_TERMINAL_ALLOWED_HOSTS"] = ",".join(hosts)
    if session.exposure.type is ExposureType.INGRESS:
        # Behind an Ingress the browser's scheme arrives only as X-Forwarded-Proto, and the
        # server marks its cookie Secure only if it sees https. The pod is reached only
        # through its Service, from the ingress controller whose address is not known in
        # advance, so every peer is trusted for X-Forwarded-*; with ClusterIP exposure the
        # default (loopback only) stays.
        plain["EC2_TERMINAL_FORWARDED_ALLOW_IPS"] = "*"
    plain["EC2_TERMINAL_RECORDINGS_DIR"] = RECORDINGS_DIR
    plain["EC2_TERMINAL_ACTIVITY_LEASE"] = lease_name(session)
    # The root filesystem is read-only; anything that wants a home writes to the tmp volume.
    plain["HOME"] = "/tmp"
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    env.append(_field_env("EC2_TERMINAL_POD_NAME", "metadata.name"))
    env.append(_field_env("EC2_TERMINAL_POD_NAMESPACE", "metadata.namespace"))
    # The Lease's holder: the operator ignores activity an earlier pod left on the Lease.
    env.append(_field_env("EC2_TERMINAL_POD_UID", "metadata.uid"))
    # The administrator's additions (the OTLP endpoint...), last so that they may refer to the
    # variables above as $(NAME); config refuses the names the operator sets.
    env.extend({"name": k, "value": v} for k, v in config.session_env.items())
    return env


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _secret_volume(name: str, secret: str, key: str) -> dict[str, Any]:
    # 0440 plus fsGroup: readable by the non-root server, by nobody else.
    return {
        "name": name,
        "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": key}],
            "defaultMode": 0o440,
        },
    }


def build_volumes(session: Session) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts (secrets read-only, scratch in emptyDirs).

    Only Secrets that check_credentials vetted are mounted (mounted_key, mounted_known_hosts).
    """
    volumes = [_secret_volume("token", token_secret_name(session), TOKEN_KEY)]
    mounts = [{"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}]
    key = mounted_key(session)
    if key is not None:
        volumes.append(_secret_volume("ssh-key", key.name, key.key))
        mounts.append({"name": "ssh-key", "mountPath": KEY_DIR, "readOnly": True})
    known_hosts = mounted_known_hosts(session)
    if known_hosts is not None:
        volumes.append(_secret_volume("known-hosts", known_hosts.name, known_hosts.key))
        mounts.append({"name": "known-hosts", "mountPath": KNOWN_HOSTS_DIR, "readOnly": True})
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    volumes.append({"name": "recordings", "emptyDir": {"sizeLimit": "1Gi"}})
    mounts.append({"name": "recordings", "mountPath": RECORDINGS_DIR})
    return volumes, mounts


def build_pod(session: Session, config: OperatorConfig) -> dict[str, Any]:
    """The session pod: `ec2-terminal serve` under a restricted securityContext."""
    volumes, mounts = build_volumes(session)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": session.pod.image or config.session_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["ec2-terminal", "serve"],
        "env": build_env(session, config),
        "ports": [{"name": "http", "containerPort": config.listen_port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "resources": dict(session.pod.resources) or dict(config.default_resources),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_user,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": rbac_name(session),
        # Mounted so the server can write its activity into the session's Lease, the one
        # thing its Role allows.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_user,
            "fsGroup": config.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if session.pod.node_selector:
        pod_spec["nodeSelector"] = dict(session.pod.node_selector)
    if session.pod.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in session.pod.tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(session),
            "labels": labels(session),
            "annotations": {
                **config.session_pod_annotations,
                ANNOTATION_CONFIG_HASH: config_hash(session, config),
                ANNOTATION_POD_HASH: pod_hash(pod_spec, config.session_pod_annotations),
            },
        },
        "spec": pod_spec,
    }


def _digest(value: Any) -> str:
    def plain(o: Any) -> Any:
        return o.value if isinstance(o, enum.Enum) else str(o)

    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=plain)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_hash(session: Session, config: OperatorConfig) -> str:
    """A digest of the spec fields the pod is built from: a change means replace the pod.

    Only the session's own inputs count, not operator settings (default image, env layout),
    so upgrading the operator does not cut every live terminal (see `pod_hash`); except the
    route, which the session domain may change: a pod serving an old host or base path
    would not work behind its new Ingress.
    """
    route = origin.plan(session, config.ingress)
    return _digest(
        {
            "name": session.name,
            "target": dataclasses.asdict(session.target),
            "credentials": session.credentials and dataclasses.asdict(session.credentials),
            "hostKey": dataclasses.asdict(session.host_key),
            "maxDuration": session.lifetime.max_duration,
            "idleTimeout": session.lifetime.idle_timeout,
            "exposure": [
                session.exposure.type,
                session.exposure.host,
                session.exposure.path_prefix,
                session.exposure.tls_secret_name,
            ],
            "pod": dataclasses.asdict(session.pod),
            "route": route and dataclasses.asdict(route),
        }
    )


def pod_hash(pod_spec: dict[str, Any], annotations: Mapping[str, str]) -> str:
    """A digest of the whole pod spec and the administrator's annotations.

    When only this one differs, the pod is out of date but still works: it is replaced only
    while nobody is connected. Without extra annotations it is the spec's digest alone, as
    before they existed, so an upgrade replaces no pod on that account.
    """
    return _digest({"spec": pod_spec, "annotations": annotations} if annotations else pod_spec)


def build_service(session: Session, config: OperatorConfig) -> dict[str, Any]:
    """A ClusterIP Service in front of the session pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(session), "labels": labels(session)},
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_SESSION: session.name},
            "ports": [
                {
                    "name": "http",
                    "port": config.service_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def network_policy_name(session: Session) -> str:
    """Name of the session pod's NetworkPolicy."""
    return session.name


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def build_network_policy(session: Session, config: OperatorConfig) -> dict[str, Any]:
    """Who may reach the session pod, and (egress) where it may connect.

    In: the ingress controller's namespaces and the health-check worker, on the server's
    port only (the kubelet's probes come from the node, which most CNIs never block). Out:
    SSH to the target's port, HTTPS for the AWS and Kubernetes APIs, DNS; link-local
    addresses (the instance metadata service) are excepted by default.
    """
    net = config.network
    allowed_in: list[dict[str, Any]] = [
        {"namespaceSelector": dict(net.ingress_namespace_selector)},
        {
            "namespaceSelector": dict(net.health_check_namespace_selector),
            "podSelector": dict(net.health_check_pod_selector),
        },
        *(dict(peer) for peer in net.extra_ingress_from),
    ]
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {LABEL_SESSION: session.name}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": allowed_in, "ports": [_tcp(config.listen_port)]}],
    }
    if net.egress_enabled:
        spec["policyTypes"].append("Egress")
        spec["egress"] = [
            {
                "to": [{"ipBlock": block.manifest()} for block in net.ssh.blocks],
                "ports": [_tcp(session.target.port)],
            },
            {
                "to": [{"ipBlock": block.manifest()} for block in net.https.blocks],
                "ports": [_tcp(port) for port in net.https.ports],
            },
            {
                "to": [
                    {
                        "namespaceSelector": dict(net.dns_namespace_selector),
                        "podSelector": dict(net.dns_pod_selector),
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, _tcp(53)],
            },
            *(dict(rule) for rule in net.extra_egress),
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": network_policy_name(session), "labels": labels(session)},
        "spec": spec,
    }


def build_ingress(session: Session, config: OperatorConfig) -> dict[str, Any]:
    """An Ingress routing the session's host and base path to the Service, WebSocket-friendly.

    Call only for a session the operator's policy accepted (admission.check_route).
    """
    exposure = session.exposure
    route = origin.plan(session, config.ingress)
    if route is None:
        raise ValueError(f"session {session.name} is not exposed by Ingress")
    timeout = str(config.ingress_timeout_seconds)
    # The session's own annotations first: the operator's are never overridden.
    annotations = dict(exposure.annotations)
    annotations.update({key: timeout for key in ingress_annotations.OPERATOR_OWNED})
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": route.base_path.rstrip("/") or "/",
                    "pathType": "Prefix",
                    "backend": {
                        "service": {
                            "name": service_name(session),
                            "port": {"name": "http"},
                        }
                    },
                }
            ]
        }
    }
    if route.host is not None:
        rule["host"] = route.host
    spec: dict[str, Any] = {"rules": [rule]}
    class_name = exposure.ingress_class_name or config.ingress.class_name
    if class_name:
        spec["ingressClassName"] = class_name
    if route.https and route.host is not None:
        # Without a secretName the controller's default certificate serves the host (a
        # wildcard for the session domain, with ingress.sessionTLS).
        tls: dict[str, Any] = {"hosts": [route.host]}
        if exposure.tls_secret_name:
            tls["secretName"] = exposure.tls_secret_name
        spec["tls"] = [tls]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": ingress_name(session),
            "labels": labels(session),
            "annotations": annotations,
        },
        "spec": spec,
    }
