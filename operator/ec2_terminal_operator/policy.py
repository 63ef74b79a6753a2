"""The administrator's policy from the chart's values: what sessions may ask for.

Whoever may create a TerminalSession must not get more through the operator than the
cluster's administrator allowed: the operator runs pods, mounts Secrets and routes hosts
with its own rights. These are the settings; admission.py makes the decisions.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

# The suffixes a prefix pattern may end in, so `registry/team/*` cannot match
# `registry/team-evil/...`: a pattern names a whole registry path, repository or tag space.
_PREFIX_ENDINGS = ("/*", ":*", "@*")
_TOLERATION_FIELDS = ("key", "operator", "value", "effect")


class PolicyError(ValueError):
    """A policy setting is malformed (the operator refuses to start)."""


@dataclasses.dataclass(frozen=True)
class Toleration:
    """A toleration sessions may carry (tolerationSeconds is free)."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Toleration:
        """From a pod's toleration, with the API server's defaults."""
        return cls(
            key=str(raw.get("key") or ""),
            operator=str(raw.get("operator") or "Equal"),
            value=str(raw.get("value") or ""),
            effect=str(raw.get("effect") or ""),
        )

    def describe(self) -> str:
        """key=value:effect (operator), for messages."""
        op = "exists" if self.operator == "Exists" else f"={self.value}"
        return f"{self.key or '*'}{op}:{self.effect or '*'}"


@dataclasses.dataclass(frozen=True)
class PodPolicy:
    """Images, scheduling and Secrets a session may use; the defaults allow the least."""

    # Exact images, or prefixes ending in /*, :* or @*. The operator's own session image is
    # always allowed; with none listed, it is the only one.
    allowed_images: tuple[str, ...] = ()
    # nodeSelector keys sessions may set, each with its allowed values ("*": any value).
    allowed_node_selectors: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    allowed_tolerations: tuple[Toleration, ...] = ()
    # A private-key Secret of type kubernetes.io/ssh-auth counts as opted in without the label.
    trust_ssh_auth_secrets: bool = True

    def __post_init__(self) -> None:
        parse_images(",".join(self.allowed_images))


def parse_images(raw: str) -> tuple[str, ...]:
    """Comma-separated image patterns; PolicyError for a prefix that could match too much."""
    patterns = tuple(item.strip() for item in raw.split(",") if item.strip())
    for pattern in patterns:
        if pattern.endswith("*") and not pattern.endswith(_PREFIX_ENDINGS):
            raise PolicyError(
                f"allowed image {pattern!r}: a prefix must end in /*, :* or @* "
                "(e.g. registry.example.com/ec2-terminal:*)"
            )
        if "*" in pattern[:-1]:
            raise PolicyError(f"allowed image {pattern!r}: '*' may only end a prefix")
    return patterns


def load_json(raw: str, what: str) -> Any:
    """Parses a JSON setting; None when empty."""
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{what} is not valid JSON: {exc.msg}") from None


def parse_node_selectors(raw: str) -> dict[str, tuple[str, ...]]:
    """JSON {label key: [allowed values]}; PolicyError if malformed."""
    value = load_json(raw, "allowed node selectors") or {}
    if not isinstance(value, dict):
        raise PolicyError("allowed node selectors must map a label key to a list of values")
    out: dict[str, tuple[str, ...]] = {}
    for key, values in value.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise PolicyError(f"allowed node selector {key!r}: values must be a list of strings")
        out[str(key)] = tuple(values)
    return out


def parse_tolerations(raw: str) -> tuple[Toleration, ...]:
    """JSON [{key, operator, value, effect}]; PolicyError if malformed."""
    value = load_json(raw, "allowed tolerations") or []
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise PolicyError("allowed tolerations must be a list of objects")
    for t in value:
        unknown = set(t) - set(_TOLERATION_FIELDS)
        if unknown:
            raise PolicyError(f"allowed toleration {t}: unknown fields {sorted(unknown)}")
    return tuple(Toleration.from_raw(t) for t in value)


_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The session domain leaves room for one 63-character label and its dot (DNS names: 253).
MAX_DOMAIN_LENGTH = 253 - 64


def _dns_name(value: str, what: str, max_length: int = 253) -> str:
    if len(value) > max_length or not _DNS_NAME.match(value):
        raise PolicyError(f"{what} {value!r} must be a lowercase DNS name")
    return value


def parse_domain(raw: str) -> str:
    """The session domain: a DNS name leaving room for one label below it."""
    return _dns_name(raw.strip(), "the session domain", MAX_DOMAIN_LENGTH)


def parse_host_patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated DNS names or *.suffix patterns."""
    patterns = tuple(item.strip() for item in raw.split(",") if item.strip())
    for pattern in patterns:
        _dns_name(pattern.removeprefix("*."), "allowed host pattern")
    return patterns


def parse_class_name(raw: str) -> str:
    """One IngressClass name."""
    return _dns_name(raw.strip(), "ingress class name")


def parse_class_names(raw: str) -> tuple[str, ...]:
    """Comma-separated IngressClass names."""
    names = tuple(item.strip() for item in raw.split(",") if item.strip())
    for name in names:
        _dns_name(name, "ingress class name")
    return names


@dataclasses.dataclass(frozen=True)
class IngressPolicy:
    """Hosts, classes and origins of session Ingresses."""

    # Each session exposed by Ingress gets its own host <name>-<namespace>.<domain>.
    session_domain: str | None = None
    # Domain hosts are served over https (a wildcard certificate on the controller, or one
    # per host from cert-manager through the allowed annotations).
    session_tls: bool = False
    # exposure.host must match one of these: a DNS name, or *.suffix for one label below it.
    allowed_hosts: tuple[str, ...] = ()
    # The IngressClass of sessions that name none (None: the cluster's default class).
    class_name: str | None = None
    allowed_class_names: tuple[str, ...] = ()
    # Host-less Ingresses put every session on one origin, where any session's page can
    # drive any other's: refused unless the administrator accepts that.
    allow_shared_origin: bool = False

    def __post_init__(self) -> None:
        if self.session_domain is not None:
            parse_domain(self.session_domain)
        parse_host_patterns(",".join(self.allowed_hosts))
        parse_class_names(",".join(filter(None, (self.class_name, *self.allowed_class_names))))
