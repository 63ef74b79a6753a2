"""kopf registration only: each handler hands over to a function in runner.py or loop.py."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ec2_terminal_operator import (
    connections,
    footprint,
    kube,
    loop,
    observed,
    origin,
    persistence,
    resources,
    runner,
)
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.metrics import OperatorMetrics
from ec2_terminal_operator.spec import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

FINALIZER = "ec2-terminal.io/cleanup"
SESSION_SELECTOR = {resources.LABEL_SESSION: kopf.PRESENT}


class QuietWakeups(logging.Filter):
    """Drops kopf's "Handler 'wake_on_...' succeeded." line, logged for every watch event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Handler 'wake_on_")


def _key(namespace: str | None, session: str) -> tuple[str, str]:
    return (namespace or "", session)


def register(
    registry: kopf.OperatorRegistry, cfg: OperatorConfig, metrics: OperatorMetrics | None = None
) -> None:
    """Registers every handler of the operator in `registry`, with intervals from `cfg`.

    Passes are counted in `metrics` (whoever serves /metrics made it), else in instruments
    of their own.
    """
    pass_metrics = metrics or OperatorMetrics()

    @kopf.on.startup(registry=registry, id="configure")
    def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="ec2-terminal.io"
        )
        # No handler needs a diff: no last-handled-configuration annotation (a PATCH each).
        settings.persistence.diffbase_storage = persistence.NoDiffBase()
        # Events come from reconcile (kopf.event); kopf's own INFO lines would only repeat
        # them in `kubectl describe`, so only its warnings become Events.
        settings.posting.level = logging.WARNING
        objects_logger = logging.getLogger("kopf.objects")
        if not any(isinstance(f, QuietWakeups) for f in objects_logger.filters):
            objects_logger.addFilter(QuietWakeups())
        settings.execution.max_workers = cfg.workers
        # A watch that silently stalls would freeze every session; reconnect regularly.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        memo["runtime"] = runner.Runtime(
            clients=kube.load_clients(cfg.workers),
            config=cfg,
            wakeups=loop.Wakeups(),
            locks=loop.PassLocks(),
            executor=settings.execution.executor,
            metrics=pass_metrics,
        )

    @kopf.on.login(registry=registry, id="login")
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        # A fresh registry has none of kopf's default login handlers: in-cluster account or
        # KUBECONFIG, through the kubernetes client library. Async: the session is made on
        # the event loop.
        info = kopf.login_via_client(**kwargs)
        return None if info is None else connections.bounded_session(info)

    # The indexes are async: kopf runs sync handlers in the executor, where they queued behind
    # the passes (each waiting on API calls) and held up every watch event, a new session's
    # daemon included. Each only picks a few fields from the body, on the event loop.
    @kopf.index("pods", labels=SESSION_SELECTOR, id="session_pods", registry=registry)
    async def session_pods(
        namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
    ) -> Any:
        return {_key(namespace, labels[resources.LABEL_SESSION]): observed.pod_view(body)}

    @kopf.index("services", labels=SESSION_SELECTOR, id="session_services", registry=registry)
    async def session_services(
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
    async def session_ingresses(
        namespace: str | None, labels: Mapping[str, str], name: str, **_: Any
    ) -> Any:
        return {_key(namespace, labels[resources.LABEL_SESSION]): name}

    @kopf.index(
        "coordination.k8s.io",
        "v1",
        "leases",
        labels=SESSION_SELECTOR,
        id="session_leases",
        registry=registry,
    )
    async def session_leases(
        namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
    ) -> Any:
        return {_key(namespace, labels[resources.LABEL_SESSION]): observed.activity_view(body)}

    @kopf.index(GROUP, VERSION, PLURAL, id="session_origins", registry=registry)
    async def session_origins(body: kopf.Body, **_: Any) -> Any:
        # Every session's host (or the shared origin), so a pass sees who else wants it.
        return origin.claim_of(body, cfg.ingress)

    @kopf.on.event("pods", labels=SESSION_SELECTOR, id="wake_on_pod", registry=registry)
    @kopf.on.event("services", labels=SESSION_SELECTOR, id="wake_on_service", registry=registry)
    @kopf.on.event(
        "coordination.k8s.io",
        "v1",
        "leases",
        labels=SESSION_SELECTOR,
        id="wake_on_lease",
        registry=registry,
    )
    async def wake(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
        # kopf updates the indexes before it calls event handlers: the pass sees this change.
        memo["runtime"].wakeups.wake(_key(namespace, labels[resources.LABEL_SESSION]))

    @kopf.on.event(GROUP, VERSION, PLURAL, id="wake_on_change", registry=registry)
    async def wake_on_change(
        namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
    ) -> None:
        footprint.slim_body(body)
        # A spec edit (suspend, lifetime, exposure) takes effect now, not at the next resync;
        # the operator's own status patches (generation already observed) wake nobody.
        if body.status.get("observedGeneration") != body.metadata.get("generation"):
            memo["runtime"].wakeups.wake(_key(namespace, name))

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, id="reconcile", cancellation_timeout=60)
    async def session_loop(
        body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **kwargs: Any
    ) -> None:
        # kopf passes each index by its id; indexes and the body are live views.
        await runner.session_loop(memo["runtime"], body, runner.Indexes.of(kwargs), stopped)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="cleanup")
    def cleanup(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
        runner.terminate(memo["runtime"], body, runner.Indexes.of(kwargs))
