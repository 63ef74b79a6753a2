"""Where a session is served: its host, base path and scheme; one origin per session.

Browsers isolate by origin (scheme, host, port), never by path: two sessions on one host
can script each other. So a session exposed by Ingress gets a host of its own under the
operator's session domain, served at `/`; an explicit `exposure.host` serves one session
only; host-less Ingresses (one shared origin) need the administrator's explicit consent.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from ec2_terminal_operator.policy import IngressPolicy
from ec2_terminal_operator.spec import ExposureType, Session, SpecError, parse_session

MAX_LABEL = 63
_HASH_LENGTH = 8


@dataclasses.dataclass(frozen=True)
class Route:
    """How browsers reach a session exposed by Ingress."""

    # None: a host-less rule, i.e. the shared origin of every host-less session.
    host: str | None
    base_path: str
    https: bool
    # The host came from the session domain (not from exposure.host).
    assigned: bool

    @property
    def shared(self) -> bool:
        """Whether other sessions may be served on the same origin."""
        return self.host is None


def host_label(name: str, namespace: str) -> str:
    """<name>-<namespace> as one DNS label; too long, it is cut and made unique by a hash."""
    label = f"{name}-{namespace}"
    if len(label) <= MAX_LABEL:
        return label
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:_HASH_LENGTH]
    return f"{label[: MAX_LABEL - _HASH_LENGTH - 1].rstrip('-')}-{digest}"


def assigned_host(session: Session, policy: IngressPolicy) -> str | None:
    """The host the session domain gives this session, if there is a domain."""
    if policy.session_domain is None:
        return None
    return f"{host_label(session.name, session.namespace)}.{policy.session_domain}"


def plan(session: Session, policy: IngressPolicy) -> Route | None:
    """The session's Ingress route, or None when it is not exposed by Ingress."""
    exposure = session.exposure
    if exposure.type is not ExposureType.INGRESS:
        return None
    tls = exposure.tls_secret_name is not None
    if exposure.host:
        # One origin serves one session (see `conflict`), so the path layout is kept.
        return Route(exposure.host, session.layout_path, tls, assigned=False)
    host = assigned_host(session, policy)
    if host is not None:
        return Route(host, "/", tls or policy.session_tls, assigned=True)
    return Route(None, session.layout_path, False, assigned=False)


@dataclasses.dataclass(frozen=True, order=True)
class Claim:
    """A session's claim on an origin; the older claim wins a conflict."""

    created: str
    namespace: str
    name: str
    base_path: str = dataclasses.field(compare=False)

    def describe(self) -> str:
        """namespace/name, for messages."""
        return f"{self.namespace}/{self.name}"


def claim_key(route: Route) -> str:
    """The index key of a route's origin ('' for the shared, host-less origin)."""
    return route.host or ""


def conflict(route: Route, mine: Claim, claims: Iterable[Claim]) -> tuple[str, str] | None:
    """(reason, message) when an older session holds this origin or a path nesting with ours.

    Claims are ordered by creation time (then namespace and name), so of two sessions that
    want one host exactly one, the older, keeps it, whichever operator pass runs first.
    """
    for other in sorted(claims):
        if (other.namespace, other.name) == (mine.namespace, mine.name) or not other < mine:
            continue
        if not route.shared:
            return (
                "HostInUse",
                f"host {route.host} already serves session {other.describe()}: one origin "
                "serves one session (pick another exposure.host)",
            )
        if other.base_path.startswith(mine.base_path) or mine.base_path.startswith(other.base_path):
            return (
                "PathNested",
                f"path {mine.base_path} nests with {other.base_path} of session "
                f"{other.describe()} on the shared origin (change exposure.pathPrefix)",
            )
    return None


def claim_of(body: Mapping[str, Any], policy: IngressPolicy) -> dict[str, Claim]:
    """The session's claim for the cluster-wide index of origins ({} when it claims none)."""
    try:
        session = parse_session(body)
    except SpecError:
        return {}
    route = plan(session, policy)
    if route is None:
        return {}
    created = str((body.get("metadata") or {}).get("creationTimestamp") or "")
    return {claim_key(route): Claim(created, session.namespace, session.name, route.base_path)}
