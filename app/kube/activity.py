"""Reports the session's activity on its own Lease, for the operator to read.

The session's token may update that one Lease and nothing else: it cannot touch its own
Pod (labels, image), so a compromised server cannot change what the operator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.kube.apiclient import ApiClient

if TYPE_CHECKING:
    from app.settings import Settings

logger = logging.getLogger(__name__)

ANNOTATION_LAST_ACTIVITY = "ec2-terminal.io/last-activity"
ANNOTATION_ACTIVE_CONNECTIONS = "ec2-terminal.io/active-connections"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# (attached connections, time of the last user input as Unix seconds or an aware datetime)
ActivitySource = Callable[[], tuple[int, "float | datetime.datetime | None"]]
ActivityWriter = Callable[[Mapping[str, str]], Awaitable[None]]


class ActivityReportError(Exception):
    """The API server refused an activity report (the message carries no token)."""


@dataclasses.dataclass(frozen=True)
class LeaseEndpoint:
    """Where the session's Lease lives, who holds it, and how to authenticate."""

    server: str
    namespace: str
    lease_name: str
    holder: str
    ca_file: str | None = None
    token: str | None = None
    # Projected ServiceAccount tokens rotate, so the file is re-read for every request.
    token_file: str | None = None

    def bearer(self) -> str:
        """The current bearer token."""
        if self.token is not None:
            return self.token
        if self.token_file is None:
            raise ActivityReportError("no ServiceAccount token configured")
        return Path(self.token_file).read_text().strip()

    @property
    def lease_url(self) -> str:
        """The Lease's URL on the API server."""
        return (
            f"{self.server.rstrip('/')}/apis/coordination.k8s.io/v1/namespaces/"
            f"{self.namespace}/leases/{self.lease_name}"
        )


def in_cluster_endpoint(
    lease_name: str,
    holder: str,
    namespace: str,
    env: Mapping[str, str] | None = None,
    account: Path = SERVICE_ACCOUNT_DIR,
) -> LeaseEndpoint:
    """The endpoint from the ServiceAccount at `account` and KUBERNETES_SERVICE_HOST/PORT."""
    # Kubernetes itself sets these two in every container: they are not our settings.
    env = os.environ if env is None else env
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ActivityReportError("KUBERNETES_SERVICE_HOST is not set: not running in a pod")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return LeaseEndpoint(
        server=f"https://{host}:{port}",
        namespace=namespace,
        lease_name=lease_name,
        holder=holder,
        ca_file=str(account / "ca.crt"),
        token_file=str(account / "token"),
    )


class PatchResponse(Protocol):
    """What lease_writer reads of an answer (ApiResponse's fields; httpx's in tests)."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    def json(self) -> Any: ...


class PatchClient(Protocol):
    """What lease_writer sends with: ApiClient, or an httpx client in tests."""

    async def patch(self, url: str, *, content: str, headers: dict[str, str]) -> PatchResponse: ...


def http_client(endpoint: LeaseEndpoint, timeout: float = 10.0) -> ApiClient:
    """An HTTP client that trusts the cluster's CA only."""
    return ApiClient(endpoint.ca_file, timeout)


def _micro_time(value: datetime.datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 UTC with microseconds."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_writer(
    endpoint: LeaseEndpoint,
    client: PatchClient,
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> ActivityWriter:
    """A JSON merge patch of the Lease: activity annotations, holder and renewTime."""

    async def write(annotations: Mapping[str, str]) -> None:
        body: dict[str, Any] = {
            "metadata": {"annotations": dict(annotations)},
            "spec": {"holderIdentity": endpoint.holder, "renewTime": _micro_time(clock())},
        }
        response = await client.patch(
            endpoint.lease_url,
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {endpoint.bearer()}",
                "Content-Type": "application/merge-patch+json",
                "Accept": "application/json",
            },
        )
        if response.status_code >= 400:
            try:
                reason = str(response.json().get("message", ""))
            except ValueError:
                reason = response.reason_phrase
            raise ActivityReportError(
                f"updating lease {endpoint.namespace}/{endpoint.lease_name} failed: "
                f"HTTP {response.status_code}: {reason}"
            )

    return write


def _to_datetime(value: float | datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC)
    return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)


def annotations_for(
    connections: int, last_activity: float | datetime.datetime | None
) -> dict[str, str]:
    """The annotations describing this activity (RFC 3339 UTC, whole seconds)."""
    out = {ANNOTATION_ACTIVE_CONNECTIONS: str(max(0, int(connections)))}
    when = _to_datetime(last_activity)
    if when is not None:
        out[ANNOTATION_LAST_ACTIVITY] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


class Sleeper(Protocol):
    """Waits between reports (a parameter so tests need not wait)."""

    def __call__(self, seconds: float, /) -> Awaitable[None]: ...


class ActivityReporter:
    """Writes activity at most every `interval` seconds, and only on change."""

    def __init__(
        self,
        source: ActivitySource,
        write: ActivityWriter,
        interval: float,
        sleep: Sleeper = asyncio.sleep,
    ) -> None:
        self._source = source
        self._write = write
        self._interval = interval
        self._sleep = sleep
        self._last_sent: dict[str, str] | None = None

    async def report_once(self) -> bool:
        """Sends the current activity if it changed; True when a report was sent."""
        connections, last_activity = self._source()
        annotations = annotations_for(connections, last_activity)
        if annotations == self._last_sent:
            return False
        await self._write(annotations)
        self._last_sent = annotations
        return True

    async def run(self) -> None:
        """Reports until cancelled; API errors are logged and retried, never raised."""
        while True:
            try:
                await self.report_once()
            except (ActivityReportError, OSError) as exc:
                logger.warning("activity report failed: %s", exc)
            await self._sleep(self._interval)


@contextlib.asynccontextmanager
async def run_reporter(
    endpoint: LeaseEndpoint, source: ActivitySource, interval: float
) -> AsyncIterator[ActivityReporter]:
    """Runs an ActivityReporter in the background for the duration of the block."""
    async with http_client(endpoint) as client:
        reporter = ActivityReporter(source, lease_writer(endpoint, client), interval)
        task = asyncio.create_task(reporter.run(), name="activity-reporter")
        try:
            yield reporter
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # A last report, so the operator sees the connections drop to zero promptly.
            with contextlib.suppress(ActivityReportError, OSError):
                await asyncio.wait_for(reporter.report_once(), timeout=2)


def endpoint_for(settings: Settings, env: Mapping[str, str] | None = None) -> LeaseEndpoint | None:
    """The Lease to report on when running as an operator-made pod; None otherwise."""
    if not settings.pod_name or not settings.pod_namespace:
        return None
    lease, holder = settings.activity_lease, settings.pod_uid
    if not lease or not holder:
        raise ActivityReportError("--activity-lease and --pod-uid must both be set")
    account = settings.service_account_dir or SERVICE_ACCOUNT_DIR
    return in_cluster_endpoint(lease, holder, settings.pod_namespace, env, account)


@contextlib.asynccontextmanager
async def report_activity(
    settings: Settings, source: Callable[[], tuple[int, float | None]]
) -> AsyncIterator[None]:
    """The server's hook: reports activity on the session's Lease when running in a pod."""
    try:
        endpoint = endpoint_for(settings)
    except ActivityReportError as exc:
        logger.warning("activity reporting off: %s", exc)
        endpoint = None
    if endpoint is None:
        yield
        return
    logger.info("reporting activity on lease %s/%s", endpoint.namespace, endpoint.lease_name)
    async with run_reporter(endpoint, source, settings.activity_interval):
        yield
