"""The Kubernetes API as the operator uses it: clients, the table of children, owned writes."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ec2_terminal_operator import resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import GROUP, PLURAL, VERSION, Session

logger = logging.getLogger(__name__)


class Group(enum.Enum):
    """The API group and version of a child, as the prefix of its paths."""

    CORE = "/api/v1"
    NETWORKING = "/apis/networking.k8s.io/v1"
    RBAC = "/apis/rbac.authorization.k8s.io/v1"
    COORDINATION = "/apis/coordination.k8s.io/v1"


class Clients:
    """JSON calls to the API server over the kubernetes package's transport (auth, TLS, pool).

    Not the package's typed API classes: importing CoreV1Api alone costs the operator ~80 MiB
    (thousands of pydantic-validated methods) and turning responses into its model objects
    costs more CPU than the rest of a pass; the operator reads and writes plain JSON.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call; the answer's JSON ({} if empty); ApiException on any non-2xx status."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request)
        data: bytes = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return dict(json.loads(data)) if data else {}


def load_clients(pool_size: int) -> Clients:
    """Kubernetes clients from the in-cluster account, else from KUBECONFIG."""
    configuration = client.Configuration()
    # One connection per executor thread, not urllib3's default 10.
    configuration.connection_pool_maxsize = pool_size
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return Clients(client.ApiClient(configuration))


class Verb(enum.Enum):
    """An API call on one namespaced object, by its HTTP method."""

    CREATE = "POST"
    READ = "GET"
    PATCH = "PATCH"
    DELETE = "DELETE"


class Update(enum.Enum):
    """How an existing child is brought in line with its manifest."""

    # Created once and never patched: immutable (roleRef), written by someone else (the
    # Lease, by the pod), replaced deliberately (the token, the pod), or nothing to change.
    KEEP = "keep"
    PATCH = "patch"
    # Patched, and what the manifest no longer has is removed too (see `removals`).
    PRUNE = "prune"


Builder = Callable[[Session, OperatorConfig], dict[str, Any]]


def _new_token_secret(session: Session, _: OperatorConfig) -> dict[str, Any]:
    return resources.build_token_secret(session, secrets.token_urlsafe(32))


@dataclasses.dataclass(frozen=True)
class Child:
    """One kind of object a session owns: its API calls, its name, its manifest, its updates."""

    kind: str
    group: Group
    # The resource's name in its paths: /api/v1/namespaces/NS/<plural>/NAME.
    plural: str
    name: Callable[[Session], str]
    build: Builder
    update: Update

    def path(self, namespace: str, name: str | None = None) -> str:
        """The collection's path in `namespace`, or one object's."""
        return object_path(self.group, self.plural, namespace, name)

    def call(
        self,
        clients: Clients,
        verb: Verb,
        namespace: str,
        name: str | None = None,
        body: Any = None,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """`verb` on this kind (a patch is a strategic merge, as kubectl's)."""
        patch = verb is Verb.PATCH
        return clients.request(
            verb.value,
            self.path(namespace, name),
            body,
            query,
            STRATEGIC_MERGE if patch else "application/json",
        )


STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def object_path(group: Group, plural: str, namespace: str, name: str | None = None) -> str:
    """/<group prefix>/namespaces/NS/<plural>[/NAME]."""
    path = f"{group.value}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name is not None else path


NETWORK_POLICY = Child(
    "NetworkPolicy",
    Group.NETWORKING,
    "networkpolicies",
    resources.network_policy_name,
    resources.build_network_policy,
    Update.PRUNE,
)
TOKEN_SECRET = Child(
    "Secret",
    Group.CORE,
    "secrets",
    resources.token_secret_name,
    _new_token_secret,
    Update.KEEP,  # only a token rotation replaces the token
)
LEASE = Child(
    "Lease",
    Group.COORDINATION,
    "leases",
    resources.lease_name,
    lambda session, _: resources.build_lease(session),
    Update.KEEP,  # the session pod writes it; its spec is the pod's report, not ours
)
SERVICE_ACCOUNT = Child(
    "ServiceAccount",
    Group.CORE,
    "serviceaccounts",
    resources.rbac_name,
    lambda session, _: resources.build_service_account(session),
    Update.KEEP,
)
ROLE = Child(
    "Role",
    Group.RBAC,
    "roles",
    resources.rbac_name,
    lambda session, _: resources.build_role(session),
    Update.PATCH,
)
ROLE_BINDING = Child(
    "RoleBinding",
    Group.RBAC,
    "rolebindings",
    resources.rbac_name,
    lambda session, _: resources.build_role_binding(session),
    Update.KEEP,  # roleRef is immutable and fixed by name
)
SERVICE = Child(
    "Service",
    Group.CORE,
    "services",
    resources.service_name,
    resources.build_service,
    Update.PATCH,
)
INGRESS = Child(
    "Ingress",
    Group.NETWORKING,
    "ingresses",
    resources.ingress_name,
    resources.build_ingress,
    Update.PRUNE,
)
POD = Child(
    "Pod",
    Group.CORE,
    "pods",
    resources.pod_name,
    resources.build_pod,
    Update.KEEP,  # pod specs are immutable: a changed pod is deleted and created again
)
# Every child, in the order they are created: the NetworkPolicy before the pod, so the pod
# never runs unfenced, and the pod last, once everything it mounts and reports to exists.
# Deletion goes the other way.
CHILDREN = (
    NETWORK_POLICY,
    TOKEN_SECRET,
    LEASE,
    SERVICE_ACCOUNT,
    ROLE,
    ROLE_BINDING,
    SERVICE,
    INGRESS,
    POD,
)


class Outcome(enum.Enum):
    """What `create_or_patch` did."""

    CREATED = "created"
    PATCHED = "patched"
    EXISTS = "exists"


class Removal(enum.Enum):
    """What `delete_owned` did."""

    DELETED = "deleted"
    GONE = "gone"
    FOREIGN = "foreign"


class NameConflict(Exception):
    """A child's name is taken by an object this session does not own; it is left alone."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"{kind} {name!r} already exists and does not belong to this session: "
            "rename the session or remove that object"
        )
        self.kind = kind


def read_json(clients: Clients, child: Child, name: str, namespace: str) -> dict[str, Any]:
    """One object as a dict (ApiException on any error, 404 included)."""
    return child.call(clients, Verb.READ, namespace, name)


def read_secret(clients: Clients, name: str, namespace: str) -> dict[str, Any]:
    """Any Secret of the namespace as a dict (ApiException on any error, 404 included)."""
    return clients.request("GET", object_path(Group.CORE, "secrets", namespace, name))


def owner_uids(obj: Mapping[str, Any]) -> set[str]:
    """The uids of an object's owners."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return {str(r.get("uid")) for r in refs if r.get("uid")}


def create_or_patch(
    clients: Clients, child: Child, namespace: str, manifest: dict[str, Any]
) -> Outcome:
    """Creates a child, or brings an existing one in line (fixed names make this idempotent).

    An existing object is touched only if it is owned by the same session, so a session can
    never take over, say, a Service someone else created under the same name.
    """
    name = manifest["metadata"]["name"]
    try:
        child.call(clients, Verb.CREATE, namespace, body=manifest)
        return Outcome.CREATED
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = read_json(clients, child, name, namespace)
    if not owner_uids(manifest) & owner_uids(existing):
        raise NameConflict(child.kind, name)
    if child.update is Update.KEEP:
        return Outcome.EXISTS
    body = removals(manifest, existing) if child.update is Update.PRUNE else manifest
    child.call(clients, Verb.PATCH, namespace, name, body)
    return Outcome.PATCHED


def removals(manifest: dict[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest plus explicit nulls for top-level spec fields and annotations it dropped.

    A patch only adds and changes keys: without the nulls an Ingress would keep its tls,
    ingressClassName or an annotation after they were removed from the session. The
    operator owns every annotation and spec field of the objects it prunes.
    """
    body = copy.deepcopy(manifest)
    spec = body.setdefault("spec", {})
    for key in (existing.get("spec") or {}).keys() - spec.keys():
        spec[key] = None
    annotations = body["metadata"].setdefault("annotations", {})
    for key in ((existing.get("metadata") or {}).get("annotations") or {}).keys() - set(
        annotations
    ):
        annotations[key] = None
    return body


def delete(clients: Clients, child: Child, name: str, namespace: str) -> bool:
    """Deletes a child known to be the session's (from its index); False when already gone."""
    try:
        child.call(clients, Verb.DELETE, namespace, name, query={"propagationPolicy": "Background"})
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def delete_owned(clients: Clients, child: Child, session: Session) -> Removal:
    """Deletes a child only if the session owns it.

    Children have fixed names, so an object under a child's name may be someone else's (the
    NameConflict case): it is read first and left alone unless owned, and the DELETE carries
    its uid as a precondition, so an object replaced in between is not deleted either.
    """
    name, namespace = child.name(session), session.namespace
    try:
        obj = read_json(clients, child, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return Removal.GONE
        raise
    if session.uid not in owner_uids(obj):
        return Removal.FOREIGN
    options = {
        "propagationPolicy": "Background",
        "preconditions": {"uid": (obj.get("metadata") or {}).get("uid")},
    }
    try:
        child.call(clients, Verb.DELETE, namespace, name, body=options)
    except ApiException as exc:
        # 404: gone meanwhile; 409: the precondition failed, it is a different object now.
        if exc.status == 404:
            return Removal.GONE
        if exc.status == 409:
            return Removal.FOREIGN
        raise
    return Removal.DELETED


def session_path(namespace: str, name: str) -> str:
    """A TerminalSession's path."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def patch_status(clients: Clients, namespace: str, name: str, changes: Mapping[str, Any]) -> bool:
    """Merge-patches a session's status; False if the session is gone."""
    try:
        clients.request(
            "PATCH",
            f"{session_path(namespace, name)}/status",
            {"status": changes},
            None,
            MERGE_PATCH,
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def delete_session(clients: Clients, session: Session) -> None:
    """Deletes the TerminalSession itself (lifetime.onExpiry: Delete)."""
    try:
        clients.request("DELETE", session_path(session.namespace, session.name))
        logger.info("session %s/%s: deleted after expiry", session.namespace, session.name)
    except ApiException as exc:
        if exc.status != 404:
            raise
