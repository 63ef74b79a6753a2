"""The NetworkPolicy settings from the chart's values: who reaches a session pod, and where
the pod may connect (the egress half keeps `target.host` away from the instance metadata
service, the API server's other ports and in-cluster services)."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from ec2_terminal_operator.policy import PolicyError, load_json


@dataclasses.dataclass(frozen=True)
class IPBlock:
    """A CIDR with exceptions, as in a NetworkPolicy's ipBlock."""

    cidr: str
    exceptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            network = ipaddress.ip_network(self.cidr)
            for ex in self.exceptions:
                inner = ipaddress.ip_network(ex)
                if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
                    raise PolicyError(f"CIDR {ex} is not inside {self.cidr}")
        except ValueError as exc:
            raise PolicyError(f"bad CIDR: {exc}") from None

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether the address is in the CIDR and in none of its exceptions."""

        def within(cidr: str) -> bool:
            net = ipaddress.ip_network(cidr)
            return net.version == address.version and address in net

        return within(self.cidr) and not any(within(ex) for ex in self.exceptions)

    def manifest(self) -> dict[str, Any]:
        """The ipBlock of a NetworkPolicy peer."""
        block: dict[str, Any] = {"cidr": self.cidr}
        if self.exceptions:
            block["except"] = list(self.exceptions)
        return block


# Everything but link-local addresses: the instance metadata service (169.254.169.254,
# fd00:ec2::254) and the like are never a session's business.
ANYWHERE_BUT_LINK_LOCAL = (
    IPBlock("0.0.0.0/0", ("169.254.0.0/16",)),
    IPBlock("::/0", ("fe80::/10", "fd00:ec2::/32")),
)


@dataclasses.dataclass(frozen=True)
class Destinations:
    """Where session pods may connect for one purpose: address blocks and ports."""

    blocks: tuple[IPBlock, ...]
    ports: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class NetworkSettings:
    """The NetworkPolicy the operator gives each session pod."""

    enabled: bool = True
    # Namespaces of the ingress controller, the only route in besides the health checker.
    ingress_namespace_selector: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    )
    health_check_pod_selector: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"matchLabels": {"app.kubernetes.io/component": "health-worker"}}
    )
    health_check_namespace_selector: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"matchLabels": {"kubernetes.io/metadata.name": "ec2-terminal"}}
    )
    # Further NetworkPolicy peers allowed in (a bastion namespace for ClusterIP sessions).
    extra_ingress_from: tuple[Mapping[str, Any], ...] = ()
    egress_enabled: bool = True
    # SSH to targets; a session's target.port must be one of these ports.
    ssh: Destinations = Destinations(ANYWHERE_BUT_LINK_LOCAL, (22,))
    # The AWS APIs (EC2 Instance Connect, console output) and the Kubernetes API (the
    # activity Lease), which answer on 443 or, for many clusters' API servers, 6443.
    https: Destinations = Destinations(ANYWHERE_BUT_LINK_LOCAL, (443, 6443))
    dns_namespace_selector: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    )
    dns_pod_selector: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"matchLabels": {"k8s-app": "kube-dns"}}
    )
    # Further egress rules ({to, ports}), e.g. the OpenTelemetry collector the chart names.
    extra_egress: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def parse(cls, raw: str) -> NetworkSettings:
        """From the chart's networkPolicy value as JSON; the defaults when empty."""
        value = load_json(raw, "the network policy settings")
        if value is None:
            return cls()
        reader = _Reader(value, "networkPolicy")
        defaults = cls()
        egress = reader.child("egress")
        settings = cls(
            enabled=reader.boolean("enabled", defaults.enabled),
            ingress_namespace_selector=reader.selector(
                "ingressNamespaceSelector", defaults.ingress_namespace_selector
            ),
            health_check_pod_selector=reader.selector(
                "healthCheckPodSelector", defaults.health_check_pod_selector
            ),
            health_check_namespace_selector=reader.selector(
                "healthCheckNamespaceSelector", defaults.health_check_namespace_selector
            ),
            extra_ingress_from=reader.peers("extraIngressFrom"),
            egress_enabled=egress.boolean("enabled", defaults.egress_enabled),
            ssh=egress.destinations("ssh", defaults.ssh),
            https=egress.destinations("https", defaults.https),
            dns_namespace_selector=egress.selector(
                "dnsNamespaceSelector", defaults.dns_namespace_selector
            ),
            dns_pod_selector=egress.selector("dnsPodSelector", defaults.dns_pod_selector),
            extra_egress=egress.rules("extraTo"),
        )
        reader.done()
        egress.done()
        return settings


class _Reader:
    """Reads one JSON object strictly: unknown keys and wrong types are PolicyErrors."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise PolicyError(f"{path} must be an object")
        self._value: dict[str, Any] = value
        self._path = path
        self._seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        return self._value.get(key)

    def child(self, key: str) -> _Reader:
        return _Reader(self._get(key) or {}, f"{self._path}.{key}")

    def boolean(self, key: str, default: bool) -> bool:
        raw = self._get(key)
        if raw is None:
            return default
        if not isinstance(raw, bool):
            raise PolicyError(f"{self._path}.{key} must be true or false")
        return raw

    def selector(self, key: str, default: Mapping[str, Any]) -> Mapping[str, Any]:
        raw = self._get(key)
        if raw is None:
            return default
        if not isinstance(raw, dict) or set(raw) - {"matchLabels", "matchExpressions"}:
            raise PolicyError(
                f"{self._path}.{key} must be a label selector (matchLabels, matchExpressions)"
            )
        return dict(raw)

    def peers(self, key: str) -> tuple[Mapping[str, Any], ...]:
        raw = self._get(key) or []
        allowed = {"namespaceSelector", "podSelector", "ipBlock"}
        if not isinstance(raw, list) or not all(
            isinstance(p, dict) and p and not set(p) - allowed for p in raw
        ):
            raise PolicyError(
                f"{self._path}.{key} must be a list of NetworkPolicy peers "
                "(namespaceSelector, podSelector, ipBlock)"
            )
        return tuple(raw)

    def rules(self, key: str) -> tuple[Mapping[str, Any], ...]:
        raw = self._get(key) or []
        if not isinstance(raw, list):
            raise PolicyError(f"{self._path}.{key} must be a list of egress rules (to, ports)")
        for i, rule in enumerate(raw):
            where = f"{self._path}.{key}[{i}]"
            reader = _Reader(rule, where)
            reader.peers("to")
            ports = reader._get("ports") or []
            reader.done()
            if not isinstance(ports, list) or not all(
                isinstance(p, dict) and "port" in p and not set(p) - {"port", "protocol", "endPort"}
                for p in ports
            ):
                raise PolicyError(f"{where}.ports must be a list of {{port, protocol, endPort}}")
        return tuple(raw)

    def destinations(self, key: str, default: Destinations) -> Destinations:
        raw = self._get(key)
        if raw is None:
            return default
        reader = _Reader(raw, f"{self._path}.{key}")
        blocks_raw = reader._get("cidrs")
        ports_raw = reader._get("ports")
        reader.done()
        blocks = default.blocks
        if blocks_raw is not None:
            if not isinstance(blocks_raw, list):
                raise PolicyError(f"{self._path}.{key}.cidrs must be a list")
            blocks = tuple(self._block(b, f"{self._path}.{key}.cidrs") for b in blocks_raw)
        ports = default.ports
        if ports_raw is not None:
            if not isinstance(ports_raw, list) or not all(
                isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535
                for p in ports_raw
            ):
                raise PolicyError(f"{self._path}.{key}.ports must be a list of ports (1-65535)")
            ports = tuple(ports_raw)
        return Destinations(blocks, ports)

    @staticmethod
    def _block(raw: Any, path: str) -> IPBlock:
        if not isinstance(raw, dict) or set(raw) - {"cidr", "except"} or "cidr" not in raw:
            raise PolicyError(f"{path}: each entry is {{cidr, except}}")
        exceptions = raw.get("except") or []
        if not isinstance(exceptions, list):
            raise PolicyError(f"{path}: except must be a list of CIDRs")
        return IPBlock(str(raw["cidr"]), tuple(str(e) for e in exceptions))

    def done(self) -> None:
        unknown = set(self._value) - self._seen
        if unknown:
            raise PolicyError(f"{self._path}: unknown settings {', '.join(sorted(unknown))}")
