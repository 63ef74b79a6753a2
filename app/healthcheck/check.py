"""One check from start to end: lock the session, probe it, write the result."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from app.ec2.clients import AwsClientCache
from app.errors import TerminalError
from app.healthcheck import probes, sessions
from app.healthcheck.lock import SessionLocks
from app.healthcheck.results import CheckResult, HealthRecord, Outcome, verdict
from app.healthcheck.sessions import KubeClients, SessionView
from app.healthcheck.settings import HealthCheckSettings

log = logging.getLogger(__name__)

SKIPPED = "skipped"
T = TypeVar("T")


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware."""
    return datetime.datetime.now(datetime.UTC)


class Disposition(enum.Enum):
    """What a check did."""

    WRITTEN = "written"
    STALE = "stale"  # probed, but a newer result was recorded meanwhile
    GONE = "gone"  # the session no longer exists
    BUSY = "busy"  # another check of the session is running
    NOT_READY = "not-ready"  # the session is not Ready (expired, suspended, provisioning)
    DISABLED = "disabled"  # spec.healthCheck.enabled is false
    LOGGED = "logged"  # no Kubernetes: the result went to the log and the metrics only


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """A check's result as the task returns it (JSON) and the metrics count it."""

    disposition: Disposition
    outcome: Outcome | None = None
    seconds: float = 0.0
    detail: str = ""

    @property
    def label(self) -> str:
        """The `result` label of ec2_terminal_health_checks_total."""
        return self.outcome.result.value if self.outcome is not None else SKIPPED

    def to_json(self) -> dict[str, Any]:
        """The task's return value."""
        out: dict[str, Any] = {"disposition": self.disposition.value, "seconds": self.seconds}
        if self.outcome is not None:
            out |= {
                "result": self.outcome.result.value,
                "message": self.outcome.message,
                "latencyMs": self.outcome.latency_ms,
            }
        if self.detail:
            out["detail"] = self.detail
        return out


class ProbeRuntime:
    """One event loop and one HTTP client for every check of a process.

    Making an HTTP client loads the CA bundle, tens of milliseconds: more than a whole probe.
    """

    def __init__(self, http_timeout: float) -> None:
        self._loop = asyncio.new_event_loop()
        self._http_timeout = http_timeout
        self._client: httpx.AsyncClient | None = None

    def run(self, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        """Runs the probes `work` starts to completion; an interruption cancels what is left."""
        try:
            return self._loop.run_until_complete(self._with_client(work))
        except BaseException:
            # A soft time limit lands here mid-probe: close what the probes left open.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            raise

    async def _with_client(self, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._http_timeout, trust_env=False)
        return await work(self._client)


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """The collaborators of checks in one process."""

    settings: HealthCheckSettings
    locks: SessionLocks
    aws: AwsClientCache
    kube: Callable[[], KubeClients]
    runtime: ProbeRuntime
    clock: Callable[[], datetime.datetime] = utc_now


async def probe_target(
    settings: HealthCheckSettings,
    aws: AwsClientCache,
    host: str | None,
    instance_id: str | None,
    region: str | None,
    port: int,
) -> list[Outcome]:
    """The SSH target's outcomes: the instance's state first (if any), then its SSH banner."""
    found: list[Outcome] = []
    if instance_id is not None:
        try:
            host, found = await asyncio.wait_for(
                _instance_target(settings, aws, instance_id, region), settings.aws_timeout
            )
        except TimeoutError:
            return [
                Outcome(
                    CheckResult.UNREACHABLE,
                    f"AWS did not answer within {settings.aws_timeout:g} s about {instance_id}",
                )
            ]
        if host is None:
            return found
    if host is None:
        return [Outcome(CheckResult.UNREACHABLE, "the session names no target host")]
    banner = await probes.ssh_banner(host, port, settings.connect_timeout, settings.banner_timeout)
    return [*found, banner]


async def _instance_target(
    settings: HealthCheckSettings, aws: AwsClientCache, instance_id: str, region: str | None
) -> tuple[str | None, list[Outcome]]:
    """The instance's address to probe, with what AWS says about it (all of it if no address)."""
    try:
        clients = await aws.open(region, settings.aws_endpoint_url)
    except TerminalError as exc:
        return None, [Outcome(CheckResult.UNREACHABLE, f"the worker cannot use AWS: {exc.message}")]
    state = await probes.instance_state(clients.ec2, instance_id)
    if state.result not in (CheckResult.OK, CheckResult.INSTANCE_IMPAIRED):
        # Stopped (or unknown to AWS) explains more than a failed connection would.
        return None, [state]
    found = [state] if state.result is CheckResult.INSTANCE_IMPAIRED else []
    host, missing = await probes.instance_address(clients.ec2, instance_id, settings.address)
    return host, found if missing is None else [*found, missing]


async def probe_session(
    settings: HealthCheckSettings,
    aws: AwsClientCache,
    client: httpx.AsyncClient,
    session: SessionView,
    port: int | None,
) -> Outcome:
    """All probes of a session at once; the verdict explains the most."""
    service = session.service_name or session.name

    async def pod() -> Outcome:
        if port is None:
            return Outcome(
                CheckResult.POD_NOT_READY,
                f"the session's Service {service} does not exist: the operator recreates it",
            )
        base = settings.endpoint(session.namespace, session.name, service, port)
        return await probes.readyz(client, base, service)

    target, pod_outcome = await asyncio.gather(
        probe_target(
            settings, aws, session.host, session.instance_id, session.region, session.port
        ),
        pod(),
    )
    return verdict(*target, pod_outcome)


def check_session(ctx: CheckContext, namespace: str, name: str, task_id: str) -> CheckReport:
    """Checks one TerminalSession and writes status.healthCheck, one check per session at once."""
    started = time.perf_counter()
    held = ctx.locks.acquire(namespace, name, task_id)
    if isinstance(held, str):
        log.info("session %s/%s: check %s is running; skipping %s", namespace, name, held, task_id)
        return CheckReport(Disposition.BUSY, detail=f"check {held} of this session is running")
    try:
        kube = ctx.kube()
        session = sessions.read_session(kube, namespace, name)
        if session is None:
            return CheckReport(Disposition.GONE, detail="the session no longer exists")
        if not session.enabled:
            return CheckReport(Disposition.DISABLED, detail="spec.healthCheck.enabled is false")
        if not session.ready:
            return CheckReport(Disposition.NOT_READY, detail=f"the session is {session.phase}")
        port = sessions.service_port(kube, namespace, session.service_name or name)
        when = ctx.clock()
        outcome = ctx.runtime.run(
            lambda client: probe_session(ctx.settings, ctx.aws, client, session, port)
        )
        # traceId: set from the check's span once telemetry exists.
        record = HealthRecord(time=when, outcome=outcome, task_id=task_id)
        written = sessions.write_health(kube, session, record)
        seconds = time.perf_counter() - started
        log.info(
            "session %s: %s (%s) in %.3f s: %s",
            session.key,
            outcome.result.value,
            written.value,
            seconds,
            outcome.message,
        )
        disposition = {
            sessions.WriteOutcome.WRITTEN: Disposition.WRITTEN,
            sessions.WriteOutcome.STALE: Disposition.STALE,
            sessions.WriteOutcome.GONE: Disposition.GONE,
        }[written]
        return CheckReport(disposition, outcome, seconds)
    finally:
        ctx.locks.release(held)


def check_server(ctx: CheckContext, server_url: str) -> CheckReport:
    """Without Kubernetes: checks the configured session server and its target; logs the result."""
    started = time.perf_counter()
    s = ctx.settings

    async def run(client: httpx.AsyncClient) -> Outcome:
        pod = probes.readyz(client, server_url.rstrip("/"), server_url)
        if s.target_host is None and s.instance_id is None:
            return verdict(await pod)
        target, pod_outcome = await asyncio.gather(
            probe_target(s, ctx.aws, s.target_host, s.instance_id, s.region, s.target_port),
            pod,
        )
        return verdict(*target, pod_outcome)

    outcome = ctx.runtime.run(run)
    seconds = time.perf_counter() - started
    log.info(
        "server %s: %s in %.3f s: %s", server_url, outcome.result.value, seconds, outcome.message
    )
    return CheckReport(Disposition.LOGGED, outcome, seconds)
