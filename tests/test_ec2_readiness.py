"""/readyz for instance targets: AWS credentials and region, checked at startup and once per TTL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from app.ec2.readiness import NOT_CHECKED, AwsReadiness
from app.http.application import create_app
from app.settings import AccessMethod, HostKeyPolicy, Settings, Target
from tests.fixtures_moto import ManualClock
from tests.fixtures_server import ServerFactory

INSTANCE = "i-0123456789abcdef0"
FINGERPRINT = "SHA256:" + "A" * 43
NO_CREDENTIALS = "no AWS credentials found"


class ScriptedCheck:
    """A readiness check that answers from a script and records each call."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.regions: list[str | None] = []
        self.lock = threading.Lock()

    def __call__(self, region: str | None) -> str | None:
        with self.lock:
            self.regions.append(region)
            return self.answers[min(len(self.regions), len(self.answers)) - 1]

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.regions)


def instance_settings() -> Settings:
    """An instance target that needs no file, so only AWS can make it unready."""
    return Settings(
        target=Target(
            instance_id=INSTANCE,
            region="eu-west-1",
            access_method=AccessMethod.INSTANCE_CONNECT,
            host_key_policy=HostKeyPolicy.FINGERPRINT,
            host_key_fingerprint=FINGERPRINT,
        ),
        token="token",
    )


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, and a client that calls it in this event loop."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


@pytest.mark.anyio
async def test_probes_reuse_the_startup_check_until_the_ttl_passes() -> None:
    check = ScriptedCheck(f"{NO_CREDENTIALS}: set AWS_PROFILE ...", None)
    clock = ManualClock()
    readiness = AwsReadiness("eu-west-1", check, ttl=30, clock=clock)
    app = create_app(instance_settings(), aws_readiness=readiness)
    async with serving(app) as client:
        assert check.regions == ["eu-west-1"], "checked once at startup"
        for _ in range(5):
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["reason"].startswith(NO_CREDENTIALS)
        clock.advance(29)
        assert (await client.get("/readyz")).status_code == 503
        assert check.calls == 1, "probes inside the TTL must not check again"

        clock.advance(2)
        # The stale probe answers at once with the last result and starts one check.
        assert (await client.get("/readyz")).status_code == 503
        with anyio.fail_after(10):
            assert await readiness.settled() is None
        assert check.calls == 2
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        assert check.calls == 2


@pytest.mark.anyio
async def test_a_host_target_never_checks_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AwsReadiness, "__init__", lambda *a, **k: pytest.fail("made"))
    settings = Settings(
        target=Target(
            host="127.0.0.1",
            host_key_policy=HostKeyPolicy.FINGERPRINT,
            host_key_fingerprint=FINGERPRINT,
        ),
        token="token",
    )
    async with serving(create_app(settings)) as client:
        reason = (await client.get("/readyz")).json()["reason"]
    assert reason == "no SSH key configured: set --key-file"


@pytest.mark.anyio
async def test_not_ready_until_the_first_check_answers() -> None:
    release = threading.Event()

    def slow_check(region: str | None) -> str | None:
        release.wait(10)
        return None

    readiness = AwsReadiness("eu-west-1", slow_check)
    assert readiness.problem() == NOT_CHECKED
    assert readiness.problem() == NOT_CHECKED
    release.set()
    with anyio.fail_after(10):
        assert await readiness.settled() is None
    assert readiness.problem() is None
    await readiness.close()


def start(server_factory: ServerFactory, **flags: Any) -> tuple[httpx.Response, str]:
    """Start `ec2-terminal serve` for an instance; its /readyz answer and its log so far."""
    options: dict[str, Any] = {
        "instance_id": INSTANCE,
        "access_method": "instance-connect",
        "host_key_policy": "fingerprint",
        "host_key_fingerprint": FINGERPRINT,
    }
    server = server_factory(None, **(options | flags))
    return httpx.get(f"{server.origin}/readyz", timeout=10), server.log()


@pytest.mark.usefixtures("aws_env")
def test_readyz_of_the_real_server_with_credentials_and_region(
    server_factory: ServerFactory,
) -> None:
    ready, log = start(server_factory, region="eu-west-1")
    assert ready.status_code == 200, ready.text
    assert "AWS credentials and region eu-west-1 look usable" in log


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("env", "flags", "reason"),
    [
        (
            {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
            {"region": "eu-west-1"},
            NO_CREDENTIALS,
        ),
        ({}, {"region": "mars-north-1"}, "'mars-north-1' is not an AWS region"),
        ({}, {}, "no AWS region configured"),
    ],
)
def test_readyz_of_the_real_server_names_what_aws_lacks(
    server_factory: ServerFactory, env: dict[str, str], flags: dict[str, str], reason: str
) -> None:
    ready, log = start(server_factory, env=env, **flags)
    assert ready.status_code == 503
    assert reason in ready.json()["reason"]
    assert f"not ready: {ready.json()['reason']}" in log, "the startup check is logged"
