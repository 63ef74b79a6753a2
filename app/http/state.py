"""What the routes share, as one typed object on `app.state.server`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from app.auth.authenticator import Authenticator
from app.metrics import Metrics
from app.settings import Settings
from app.terminal.registry import SessionRegistry

if TYPE_CHECKING:
    from app.ec2.readiness import AwsReadiness

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "the terminal server is shutting down"


@dataclass
class ServerState:
    """The server's settings, instruments, sessions and logins, and whether it is draining."""

    settings: Settings
    metrics: Metrics
    registry: SessionRegistry
    auth: Authenticator
    # For instance targets: whether AWS calls can work; None for a host target.
    aws_readiness: AwsReadiness | None = None
    draining: bool = False

    def ready_problem(self) -> str | None:
        """Why /readyz answers 503 now, or None."""
        if self.draining:
            return "shutting down"
        problem = self.settings.ready_problem
        if problem is None and self.auth.key.value is None:
            problem = f"the token file {self.settings.token_file} holds no token"
        if problem is None and self.aws_readiness is not None:
            problem = self.aws_readiness.problem()
        return problem

    async def drain(self) -> None:
        """Refuse new sessions, then end the open ones with an EXIT that says why."""
        if self.draining:
            return
        self.draining = True
        log.info("draining %d session(s)", len(self.registry))
        await self.registry.shutdown(SHUTDOWN_REASON)


def server_state(app: Starlette) -> ServerState:
    """The state `create_app` hung on `app` (Starlette's `app.state` itself is untyped)."""
    state: ServerState = app.state.server
    return state
