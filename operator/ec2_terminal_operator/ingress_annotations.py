"""The Ingress annotations a session may set: an allow-list of keys, each with a value shape.

Annotations configure the shared ingress controller: free text can add upstreams
(`auth-url`, `mirror-target`), aliases (`server-alias`), rewrites or raw configuration.
Only keys whose values can be checked completely are allowed (numbers, sizes, booleans,
CIDR lists, object names); the CRD refuses the rest (CEL rules generated from this table,
see `cel_rules`) and the operator checks again, since a CRD may be older than the operator.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

NGINX = "nginx.ingress.kubernetes.io/"


class ValueShape(enum.Enum):
    """What an allowed annotation's value must look like: (regular expression, wording)."""

    SECONDS = (r"^[0-9]{1,4}$", "a number of seconds (at most 4 digits)")
    SIZE = (r"^[0-9]{1,6}[kKmMgG]?$", "a size such as 8k or 10m")
    COUNT = (r"^[0-9]{1,6}$", "a whole number (at most 6 digits)")
    BOOLEAN = (r"^(true|false)$", "true or false")
    CIDRS = (
        # Counted repeats of a group would exceed RE2's limit; the CRD bounds the length.
        r"^[0-9a-fA-F.:]+/[0-9]{1,3}(, ?[0-9a-fA-F.:]+/[0-9]{1,3})*$",
        "a comma-separated list of CIDRs",
    )
    NAME = (r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", "a lowercase object name")

    @property
    def pattern(self) -> str:
        """The regular expression (RE2-compatible, so CEL's matches() can use it too)."""
        return self.value[0]

    @property
    def wording(self) -> str:
        """What the value must be, for messages."""
        return self.value[1]


ALLOWED: Mapping[str, ValueShape] = {
    NGINX + "proxy-connect-timeout": ValueShape.SECONDS,
    NGINX + "proxy-body-size": ValueShape.SIZE,
    NGINX + "proxy-buffer-size": ValueShape.SIZE,
    NGINX + "limit-connections": ValueShape.COUNT,
    NGINX + "limit-rps": ValueShape.COUNT,
    NGINX + "limit-rpm": ValueShape.COUNT,
    NGINX + "limit-burst-multiplier": ValueShape.COUNT,
    NGINX + "ssl-redirect": ValueShape.BOOLEAN,
    NGINX + "force-ssl-redirect": ValueShape.BOOLEAN,
    NGINX + "whitelist-source-range": ValueShape.CIDRS,
    NGINX + "denylist-source-range": ValueShape.CIDRS,
    "cert-manager.io/cluster-issuer": ValueShape.NAME,
    "cert-manager.io/issuer": ValueShape.NAME,
}
# Set by the operator on every session Ingress; a session can never override them.
OPERATOR_OWNED = (NGINX + "proxy-read-timeout", NGINX + "proxy-send-timeout")


def problem(annotations: Mapping[str, str]) -> str | None:
    """Why these annotations are refused, or None when every one is allowed."""
    for key, value in sorted(annotations.items()):
        if key in OPERATOR_OWNED:
            return f"exposure.annotations may not set {key}: the operator sets it"
        shape = ALLOWED.get(key)
        if shape is None:
            return f"exposure.annotations may not set {key} (allowed: {', '.join(ALLOWED)})"
        if not re.match(shape.pattern, value):
            return f"exposure.annotations[{key}] must be {shape.wording}"
    return None


def _cel_list(keys: list[str]) -> str:
    return "[" + ", ".join(f"'{k}'" for k in keys) + "]"


def cel_rules() -> list[dict[str, str]]:
    """The CRD's x-kubernetes-validations of exposure.annotations, equal to `problem`."""
    rules = [
        {
            "rule": f"self.all(k, k in {_cel_list(list(ALLOWED))})",
            "message": "exposure.annotations may only set these keys: "
            + ", ".join(ALLOWED)
            + " (other annotations can inject configuration into the shared ingress "
            "controller; proxy-read-timeout and proxy-send-timeout are set by the operator)",
        }
    ]
    for shape in ValueShape:
        keys = [k for k, s in ALLOWED.items() if s is shape]
        rules.append(
            {
                "rule": f"self.all(k, !(k in {_cel_list(keys)}) || self[k].matches("
                f"'{shape.pattern}'))",
                "message": f"exposure.annotations {', '.join(keys)} must be {shape.wording}",
            }
        )
    return rules
