"""Pytest plugin: moto's server in the test process, with what moto lacks set in its backend.

moto answers every instance with the same console text and forgets the keys sent to EC2
Instance Connect, so the fixture gives each instance its own console text and records every
pushed key with the time on a clock the test controls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.core.types import Base64EncodedString
from moto.core.utils import utcnow
from moto.ec2.models import ec2_backends
from moto.ec2.responses.general import SAMPLE_CONSOLE_OUTPUT, General
from moto.ec2instanceconnect.responses import Ec2InstanceConnectResponse
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
# Instance Connect keeps a pushed key usable on the instance for this long.
KEY_LIFETIME = 60.0
AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@dataclass
class ManualClock:
    """Seconds that move only when the test says so."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class PushedKey:
    """One SendSSHPublicKey call as moto received it."""

    public_key: str
    os_user: str
    instance_id: str
    availability_zone: str
    time: float


@dataclass
class MotoAws:
    """The moto server, its EC2 backend, consoles per instance and the keys pushed so far."""

    endpoint_url: str
    region: str
    clock: ManualClock
    pushed: list[PushedKey] = field(default_factory=list)
    consoles: dict[str, str] = field(default_factory=dict)
    # Called after each push is recorded, e.g. to age the key or delay it.
    on_push: Callable[[PushedKey], None] | None = None

    @property
    def backend(self) -> Any:
        """moto's EC2 backend for the test's account and region."""
        return ec2_backends[DEFAULT_ACCOUNT_ID][self.region]

    def ec2(self) -> Any:
        return boto3.client("ec2", self.region, endpoint_url=self.endpoint_url)

    def run_instance(
        self, public_ip: str | None = "127.0.0.1", private_ip: str | None = None
    ) -> str:
        """Launch an instance through the API, then point its addresses where the test wants."""
        reservation = self.ec2().run_instances(
            ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro"
        )
        instance_id: str = reservation["Instances"][0]["InstanceId"]
        nic = self.backend.get_instance(instance_id).nics[0]
        nic.public_ip = public_ip
        if private_ip is not None:
            nic.private_ip_address = private_ip
        return instance_id

    def stop_instance(self, instance_id: str) -> None:
        self.ec2().stop_instances(InstanceIds=[instance_id])

    def terminate_instance(self, instance_id: str) -> None:
        self.ec2().terminate_instances(InstanceIds=[instance_id])

    def set_state(self, instance_id: str, name: str, code: int) -> None:
        """Put an instance in a state the API cannot reach directly (e.g. pending)."""
        state = self.backend.get_instance(instance_id)._state
        state.name, state.code = name, code

    def valid_keys(self, os_user: str) -> list[str]:
        """Keys pushed for `os_user` that are usable now: at most 60 s old, not from the future."""
        now = self.clock()
        return [
            k.public_key
            for k in self.pushed
            if k.os_user == os_user and now - KEY_LIFETIME <= k.time <= now
        ]

    @contextlib.contextmanager
    def iam_enforced(self) -> Iterator[None]:
        """Make moto check every request against IAM policies (it lets all through by default)."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=b"0", timeout=10)
        try:
            yield
        finally:
            httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=b"inf", timeout=10)

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this moto."""
        return {key: os.environ[key] for key in os.environ if key.startswith("AWS_")}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the test session, on a free loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials only: no profile, no metadata service, no real account reachable."""
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if "proxy" in name.lower():
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # Without this, a credential chain that finds nothing asks 169.254.169.254.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto_aws(moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> MotoAws:
    """A reset moto with per-instance console text and a record of Instance Connect pushes."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    aws = MotoAws(endpoint_url=moto_endpoint, region=REGION, clock=ManualClock())
    send_ssh_public_key = Ec2InstanceConnectResponse.send_ssh_public_key

    def recording_send(self: Ec2InstanceConnectResponse) -> str:
        pushed = PushedKey(
            public_key=self._get_param("SSHPublicKey"),
            os_user=self._get_param("InstanceOSUser"),
            instance_id=self._get_param("InstanceId"),
            availability_zone=self._get_param("AvailabilityZone"),
            time=aws.clock(),
        )
        aws.pushed.append(pushed)
        if aws.on_push is not None:
            aws.on_push(pushed)
        result: str = send_ssh_public_key(self)
        return result

    def console_output(self: General) -> ActionResult:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        text = aws.consoles.get(instance.id, SAMPLE_CONSOLE_OUTPUT)
        return ActionResult(
            {
                "InstanceId": instance.id,
                "Timestamp": utcnow(),
                "Output": Base64EncodedString.from_raw_string(text),
            }
        )

    monkeypatch.setattr(Ec2InstanceConnectResponse, "send_ssh_public_key", recording_send)
    monkeypatch.setattr(General, "get_console_output", console_output)
    return aws
