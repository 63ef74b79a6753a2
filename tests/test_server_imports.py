"""What a session pod loads: a host target needs no AWS, HTTP client library or tracing SDK,
and no server needs uvicorn's command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import env_without_proxies

# What `ec2-terminal serve` runs before it listens, for the target in argv[1] (tracing off).
SERVE = """
import json, sys
from app.cli.main import build_parser
from app.cli.serve import settings_from_args
from app.http.application import create_app
from app.http.server import DrainingServer, uvicorn_config
from app.telemetry import Component, setup_telemetry

args = build_parser().parse_args(["serve", *sys.argv[1:]])
settings = settings_from_args(args)
app = create_app(settings, telemetry=setup_telemetry(Component.SESSION_SERVER))
config = uvicorn_config(app, settings)
config.load()  # imports the protocols and the lifespan, as run() does
DrainingServer(config, app)
heavy = ("boto3", "botocore", "httpx", "kubernetes", "opentelemetry", "kopf")
heavy += ("click", "watchfiles")
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(heavy))))
"""


def loaded(*argv: str) -> list[str]:
    env = {k: v for k, v in env_without_proxies().items() if not k.startswith("OTEL_")}
    env.pop("ENABLE_OTEL", None)
    out = subprocess.run(
        [sys.executable, "-c", SERVE, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    ).stdout
    result: list[str] = json.loads(out.splitlines()[-1])
    return result


def test_a_host_target_loads_no_aws_http_client_tracing_or_cli() -> None:
    """Issue 15.4: boto3 and httpx cost a session pod ~0.9 s of start-up and ~10 MiB, uvicorn's
    command line (click, watchfiles) ~45 ms."""
    assert loaded("--host", "10.0.0.1", "--key-file", "/nonexistent") == []


@pytest.mark.parametrize("method", ["ssh-key", "instance-connect"])
def test_an_instance_target_loads_boto3(method: str) -> None:
    """The other side of the check above: an EC2 target does need AWS (so the check can fail)."""
    got = loaded("--instance-id", "i-0123456789abcdef0", "--access-method", method)
    assert {"boto3", "botocore"} <= set(got)


def test_uvicorn_keeps_its_whole_package_when_asked() -> None:
    """What the session server leaves out of uvicorn still loads for whoever names it."""
    code = (
        "import sys, app.http.server, uvicorn\n"
        "assert 'click' not in sys.modules\n"
        "from uvicorn.lifespan.on import LifespanOn\n"
        "assert uvicorn.Config.__module__ == 'uvicorn.config' and 'click' not in sys.modules\n"
        "assert callable(uvicorn.run) and uvicorn.__version__ and 'click' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
