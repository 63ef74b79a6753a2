"""Whether AWS calls can work for an instance target (region, credentials), for /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import boto3
from botocore.exceptions import BotoCoreError

from app.ec2.clients import checked_region
from app.ec2.errors import AwsError

log = logging.getLogger(__name__)

# /readyz re-checks AWS credentials at most this often, and gives a check this long.
READINESS_TTL = 30.0
READINESS_CHECK_TIMEOUT = 10.0
NOT_CHECKED = "AWS credentials and region not checked yet"


def aws_ready_problem(region: str | None) -> str | None:
    """Why AWS calls cannot work (no or unknown region, no credentials), or None; blocking."""
    session = boto3.session.Session()
    try:
        checked_region(session, region)
        # Finding credentials may ask the metadata service, so call this once, not per probe.
        found = session.get_credentials()
    except AwsError as exc:
        return str(exc)
    except BotoCoreError as exc:
        return f"AWS credentials could not be loaded: {type(exc).__name__}"
    if found is None:
        return (
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or give the pod a role (IRSA, Pod Identity)"
        )
    return None


class AwsReadiness:
    """Whether AWS calls can work for an instance target, for /readyz; checked once per TTL."""

    # The server checks once at startup. Later, a probe that finds the answer older than `ttl`
    # starts one check in the background and answers with the last result: looking for
    # credentials may ask the metadata or container credentials endpoint, so a probe never
    # waits for it, and probes never cause more than one check per `ttl`.

    def __init__(
        self,
        region: str | None,
        check: Callable[[str | None], str | None] = aws_ready_problem,
        ttl: float = READINESS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._region = region
        self._check = check
        self._ttl = ttl
        self._clock = clock
        self._problem: str | None = NOT_CHECKED
        self._checked_at: float | None = None
        self._task: asyncio.Task[str | None] | None = None

    async def refresh(self) -> str | None:
        """Check now, in a worker thread; keep and return the answer."""
        try:
            async with asyncio.timeout(READINESS_CHECK_TIMEOUT):
                problem = await asyncio.to_thread(self._check, self._region)
        except TimeoutError:
            problem = f"looking for AWS credentials took longer than {READINESS_CHECK_TIMEOUT:g} s"
        if problem != self._problem:
            if problem is None:
                log.info("AWS credentials and region %s look usable", self._region or "(default)")
            else:
                log.warning("not ready: %s (/readyz answers 503 until fixed)", problem)
        self._problem, self._checked_at = problem, self._clock()
        return problem

    def problem(self) -> str | None:
        """The last answer; if it is older than the TTL, a check starts in the background."""
        stale = self._checked_at is None or self._clock() - self._checked_at >= self._ttl
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.refresh())
        return self._problem

    async def settled(self) -> str | None:
        """The answer once a background check in progress has finished."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self._problem

    async def close(self) -> None:
        """Stop a background check that is still running."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
