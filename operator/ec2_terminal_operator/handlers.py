"""kopf registration only: each handler hands over to a function in reconcile.py."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config

from ec2_terminal_operator import observed, reconcile, resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import GROUP, PLURAL, VERSION, parse_session

logger = logging.getLogger(__name__)

FINALIZER = "ec2-terminal.io/cleanup"
SESSION_SELECTOR = {resources.LABEL_SESSION: kopf.PRESENT}


class QuietResync(logging.Filter):
    """Drops kopf's "Timer 'reconcile' succeeded." line, logged per session per resync."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timer 'reconcile' succeeded")


def load_clients(pool_size: int) -> reconcile.Clients:
    """Kubernetes clients from the in-cluster account, else from KUBECONFIG."""
    configuration = client.Configuration()
    # One connection per executor thread, not urllib3's default 10.
    configuration.connection_pool_maxsize = pool_size
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return reconcile.Clients.from_api_client(client.ApiClient(configuration))


def _key(namespace: str | None, session: str) -> tuple[str, str]:
    return (namespace or "", session)


def register(registry: kopf.OperatorRegistry, cfg: OperatorConfig) -> None:
    """Registers every handler of the operator in `registry`, with intervals from `cfg`."""

    @kopf.on.startup(registry=registry, id="configure")
    def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="ec2-terminal.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="ec2-terminal.io", key="last-handled-configuration"
        )
        # Events come from reconcile (kopf.event); kopf's own INFO lines ("Timer succeeded",
        # once per resync) would flood `kubectl describe`, so only its warnings become Events.
        settings.posting.level = logging.WARNING
        objects_logger = logging.getLogger("kopf.objects")
        if not any(isinstance(f, QuietResync) for f in objects_logger.filters):
            objects_logger.addFilter(QuietResync())
        settings.execution.max_workers = cfg.workers
        # A watch that silently stalls would freeze every session; reconnect regularly.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        if "clients" not in memo:
            memo["clients"] = load_clients(cfg.workers)
        memo["config"] = cfg

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A fresh registry has none of kopf's default login handlers: in-cluster account or
        # KUBECONFIG, through the kubernetes client library.
        return kopf.login_via_client(**kwargs)

    @kopf.index("pods", labels=SESSION_SELECTOR, id="session_pods", registry=registry)
    def session_pods(
        namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
    ) -> Any:
        return {_key(namespace, labels[resources.LABEL_SESSION]): observed.pod_view(body)}

    @kopf.index("services", labels=SESSION_SELECTOR, id="session_services", registry=registry)
    def session_services(
        namespace: str | None, labels: Mapping[str, str], name: str, **_: Any
    ) -> Any:
        return {_key(namespace, labels[resources.LABEL_SESSION]): name}

    @kopf.index(
        "networking.k8s.io",
        "v1",
        "ingresses",
        labels=SESSION_SELECTOR,
        id="session_ingresses",
        registry=registry,
    )
    def session_ingresses(
        namespace: str | None, labels: Mapping[str, str], name: str, **_: Any
    ) -> Any:
        return {_key(namespace, labels[resources.LABEL_SESSION]): name}

    @kopf.timer(
        GROUP, VERSION, PLURAL, interval=cfg.resync_seconds, registry=registry, id="reconcile"
    )
    def reconcile_session(body: kopf.Body, memo: Any, patch: kopf.Patch, **kwargs: Any) -> None:
        # kopf passes each index by its id.
        pods: kopf.Index[tuple[str, str], observed.PodView] = kwargs["session_pods"]
        services: kopf.Index[tuple[str, str], str] = kwargs["session_services"]
        ingresses: kopf.Index[tuple[str, str], str] = kwargs["session_ingresses"]
        session = parse_session(body)
        key = _key(session.namespace, session.name)
        changes = reconcile.reconcile(
            reconcile.Pass(
                clients=memo["clients"],
                config=memo["config"],
                body=body,
                session=session,
                pods=pods.get(key, []),
                services=services.get(key, []),
                ingresses=ingresses.get(key, []),
                memo=memo,
            )
        )
        if changes:
            patch.status.update(changes)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="cleanup")
    def cleanup(body: kopf.Body, memo: Any, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Terminating"
        reconcile.cleanup(memo["clients"], parse_session(body))
