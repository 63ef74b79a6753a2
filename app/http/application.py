"""Builds the ASGI application from settings; no request logic lives here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.auth.accesskey import AccessKey
from app.auth.authenticator import Authenticator
from app.auth.logins import LoginStore
from app.http import files, login, pageconfig, recordings, routes
from app.http.middleware import HostCheck, HostPolicy, SecurityHeaders
from app.http.state import ServerState
from app.kube.activity import report_activity
from app.metrics import Metrics
from app.settings import Settings
from app.ssh.connector import PlanSource, SSHConnector
from app.ssh.plan import ConnectPlan, host_plan
from app.telemetry import Telemetry
from app.terminal.heap import HeapTrimmer, malloc_trim
from app.terminal.ports import Connector
from app.terminal.registry import SessionRegistry

if TYPE_CHECKING:
    from app.ec2.readiness import AwsReadiness


def _routes(base: str) -> list[BaseRoute]:
    health = [
        Route("/healthz", routes.healthz),
        Route("/readyz", routes.readyz),
        Route("/health-check/", routes.healthz),
        Route("/metrics", routes.metrics),
    ]
    prefixed = [
        Route(base, routes.page),
        Route(base + "login", login.log_in, methods=["POST"]),
        Route(base + "login", login.login_status, methods=["GET"]),
        Route(base + "logout", login.log_out, methods=["POST"]),
        WebSocketRoute(base + "ws", routes.terminal_socket),
        Route(base + "files", files.upload, methods=["PUT"]),
        Route(base + "files", files.download, methods=["GET"]),
        Route(base + "config", pageconfig.page_config),
        Route(base + "recordings/", recordings.recordings),
        Route(base + "recordings/{name}", recordings.recordings),
        Mount(base + "static", StaticFiles(directory=routes.STATIC_DIR, check_dir=False)),
    ]
    if base != "/":
        prefixed += [Route(base + r.path.lstrip("/"), r.endpoint) for r in health]
        prefixed.append(Route(base.rstrip("/"), routes.add_slash))
    prefixed.append(Route(base + "recordings", routes.add_slash))
    return health + prefixed


def plan_source(settings: Settings) -> PlanSource:
    """Where each connection's plan comes from: the settings, or EC2 for an instance target."""
    target = settings.target
    if target.instance_id is None:
        # A host target never loads boto3, which costs a session pod ~0.4 s of start-up and
        # ~15 MiB (bench/footprint.py).

        async def host_target(attempt: int = 0) -> ConnectPlan:
            return host_plan(target)

        return host_target
    from app.ec2.clients import AwsClientCache
    from app.ec2.plan import prepare_connection

    # One cache for the server's lifetime, so sessions and retries share the clients.
    return partial(prepare_connection, settings, aws=AwsClientCache())


def create_app(
    settings: Settings,
    connector: Connector | None = None,
    aws_readiness: AwsReadiness | None = None,
    telemetry: Telemetry | None = None,
) -> Starlette:
    """The session server for `settings`; `connector` and `aws_readiness` replace AWS in tests.

    With `telemetry` enabled, every request and WebSocket is traced.
    """
    metrics = Metrics()
    if aws_readiness is None and settings.target.instance_id is not None:
        from app.ec2.readiness import AwsReadiness

        aws_readiness = AwsReadiness(settings.target.region)
    if connector is None:
        connector = SSHConnector(plan_source(settings), settings.limits)
    registry = SessionRegistry(
        connector,
        settings.limits,
        metrics,
        settings.recordings_dir,
        trimmer=HeapTrimmer(malloc_trim()),
    )
    auth = Authenticator(
        AccessKey(settings.token, settings.token_file),
        LoginStore(settings.login_ttl),
        base_path=settings.base_path,
        allowed_origins=settings.allowed_origins,
        link_ttl=settings.link_ttl,
    )
    state = ServerState(settings, metrics, registry, auth, aws_readiness)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(auth.maintained(settings.token_check_interval))
            if aws_readiness is not None:
                # Once before the first probe; afterwards at most once per TTL, in the background.
                await aws_readiness.refresh()
                stack.push_async_callback(aws_readiness.close)
            if settings.pod_name and settings.pod_namespace:
                await stack.enter_async_context(report_activity(settings, registry.activity))
            yield
            await state.drain()

    middleware = [
        Middleware(SecurityHeaders),
        Middleware(HostCheck, policy=HostPolicy(settings.allowed_hosts)),
    ]
    if telemetry is not None and telemetry.enabled:
        from app.telemetry.asgi import TracingMiddleware

        # Outermost, so refused requests (421, 503) are traced too.
        middleware.insert(0, Middleware(TracingMiddleware, base_path=settings.base_path))
    app = Starlette(routes=_routes(settings.base_path), middleware=middleware, lifespan=lifespan)
    # Its redirects are absolute URLs built from Host that keep the query; routes.add_slash
    # serves the two paths that need one.
    app.router.redirect_slashes = False
    app.state.server = state
    return app
