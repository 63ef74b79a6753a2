"""Runs a session's passes for the kopf handlers: its loop while it lives, a last one on delete.

Every pass reads the live body and the watch indexes, reconciles, and writes the status
through `write_status`, the operator's one writer of a session's status.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

from ec2_terminal_operator import children, kube, loop, reconcile
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.kube import Clients
from ec2_terminal_operator.loop import Key
from ec2_terminal_operator.observed import Activity, PodView
from ec2_terminal_operator.origin import Claim
from ec2_terminal_operator.reconcile import SessionState
from ec2_terminal_operator.spec import parse_session


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What every handler shares, made once at startup."""

    clients: Clients
    config: OperatorConfig
    wakeups: loop.Wakeups
    locks: loop.PassLocks
    # The thread pool kopf runs sync handlers in; passes run there too.
    executor: Executor | None


@dataclasses.dataclass(frozen=True)
class Indexes:
    """kopf's indexes of what the watches saw, as live views.

    Children are keyed (namespace, session name); origins by host ('' for the shared one).
    """

    pods: Mapping[Key, Iterable[PodView]]
    services: Mapping[Key, Iterable[str]]
    ingresses: Mapping[Key, Iterable[str]]
    leases: Mapping[Key, Iterable[Activity]]
    origins: Mapping[str, Iterable[Claim]]

    @classmethod
    def of(cls, handler_kwargs: Mapping[str, Any]) -> Indexes:
        """The indexes kopf passes every handler as keyword arguments, by index id."""
        return cls(
            pods=handler_kwargs["session_pods"],
            services=handler_kwargs["session_services"],
            ingresses=handler_kwargs["session_ingresses"],
            leases=handler_kwargs["session_leases"],
            origins=handler_kwargs["session_origins"],
        )


def key_of(body: Mapping[str, Any]) -> Key:
    """A session's (namespace, name)."""
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


def write_status(
    clients: Clients, key: Key, state: SessionState, changes: Mapping[str, Any]
) -> None:
    """Patches the session's status (if anything changed) and remembers what it wrote."""
    if changes and kube.patch_status(clients, *key, changes):
        state.written.record(changes)


def one_pass(
    runtime: Runtime, body: Mapping[str, Any], indexes: Indexes, state: SessionState
) -> None:
    """Reconciles the session once, from its body and the indexes as they are now."""
    key = key_of(body)
    with runtime.locks.holding(key):
        _reconcile(runtime, key, body, indexes, state)


def _reconcile(
    runtime: Runtime, key: Key, body: Mapping[str, Any], indexes: Indexes, state: SessionState
) -> None:
    current = {**body, "status": state.written.view(body.get("status") or {})}
    changes = reconcile.reconcile(
        reconcile.Pass(
            clients=runtime.clients,
            config=runtime.config,
            body=current,
            session=parse_session(current),
            pods=indexes.pods.get(key, []),
            services=indexes.services.get(key, []),
            ingresses=indexes.ingresses.get(key, []),
            leases=indexes.leases.get(key, []),
            origins=indexes.origins,
            state=state,
        )
    )
    write_status(runtime.clients, key, state, changes)


async def session_loop(
    runtime: Runtime, body: Mapping[str, Any], indexes: Indexes, stopped: loop.Stopped
) -> None:
    """The session's daemon: passes until kopf stops it (the session is deleted, or we exit)."""
    state = SessionState()
    await loop.run(
        key_of(body),
        functools.partial(one_pass, runtime, body, indexes, state),
        stopped,
        runtime.wakeups,
        runtime.executor,
        runtime.config.resync_seconds,
    )


def terminate(runtime: Runtime, body: Mapping[str, Any], indexes: Indexes) -> list[str]:
    """The delete handler: a last pass (phase Terminating), then every owned child goes."""
    key = key_of(body)
    with runtime.locks.holding(key):
        _reconcile(runtime, key, body, indexes, SessionState())
        return children.cleanup(runtime.clients, parse_session(body))
