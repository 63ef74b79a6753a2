"""Pytest plugin: moto's server in the test process, with what moto lacks set in its backend.

moto answers every instance with the same console text and forgets the keys sent to EC2
Instance Connect, so the fixture gives each instance its own console text and records every
pushed key with the time on a clock the test controls. It also counts the requests for each
action the server calls and can answer the next ones with an error code (throttling, a state
change) that moto itself never returns.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from moto.core.exceptions import ServiceException
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.core.types import Base64EncodedString
from moto.core.utils import utcnow
from moto.ec2.models import ec2_backends
from moto.ec2.responses.general import SAMPLE_CONSOLE_OUTPUT, General
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2instanceconnect.responses import Ec2InstanceConnectResponse
from moto.server import ThreadedMotoServer

from tests.fixtures_sshd import Sshd, SshdFactory

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


class InjectedError(ServiceException):
    """An AWS error a test queued; defined outside moto so moto serializes it for any service."""


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
    # Seconds until each next pushed key reaches the instance (a race), consumed in order.
    push_delays: list[float] = field(default_factory=list)
    # Called after each push is recorded, e.g. to age the key.
    on_push: Callable[[PushedKey], None] | None = None
    # Requests moto received per action (DescribeInstances, GetConsoleOutput, SendSSHPublicKey).
    requests: Counter[str] = field(default_factory=Counter)
    # Error codes to answer the next requests of an action with, consumed in order.
    failures: dict[str, list[str]] = field(default_factory=dict)

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
        """Keys pushed for `os_user` that are usable now: arrived, and at most 60 s ago."""
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

    def fail_next(self, action: str, *codes: str) -> None:
        """Answer the next requests of `action` with these AWS error codes, one each."""
        self.failures.setdefault(action, []).extend(codes)

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this moto."""
        return {key: os.environ[key] for key in os.environ if key.startswith("AWS_")}


def console_with_host_keys(public_keys: list[str]) -> str:
    """Console text in the shape cloud-init prints, listing `public_keys` (OpenSSH lines)."""
    keys = [" ".join(line.split()[:2]) for line in public_keys]
    return "\r\n".join(
        [
            "[    0.000000] Linux version 6.1.0 (builder@amazon)",
            "ec2: #############################################################",
            "-----BEGIN SSH HOST KEY KEYS-----",
            *(f"{key} root@ip-10-0-0-5" for key in keys),
            "-----END SSH HOST KEY KEYS-----",
            "[   12.500000] cloud-init[1234]: Cloud-init v. 23.2 finished",
            "",
        ]
    )


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
            time=aws.clock() + (aws.push_delays.pop(0) if aws.push_delays else 0.0),
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

    def instrumented(action: str, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """`handler`, counting its requests and answering with queued error codes first."""

        def handle(self: Any) -> Any:
            aws.requests[action] += 1
            queued = aws.failures.get(action)
            if queued:
                code = queued.pop(0)
                raise InjectedError(code, f"{code} (injected by the test)")
            return handler(self)

        return handle

    describe_instances = InstanceResponse.describe_instances
    monkeypatch.setattr(
        Ec2InstanceConnectResponse,
        "send_ssh_public_key",
        instrumented("SendSSHPublicKey", recording_send),
    )
    monkeypatch.setattr(
        General, "get_console_output", instrumented("GetConsoleOutput", console_output)
    )
    monkeypatch.setattr(
        InstanceResponse,
        "describe_instances",
        instrumented("DescribeInstances", describe_instances),
    )
    return aws


class _KeysHandler(BaseHTTPRequestHandler):
    """GET /keys/<user>: the Instance Connect keys usable for that user now."""

    aws: MotoAws

    def do_GET(self) -> None:
        user = self.path.removeprefix("/keys/")
        body = "".join(f"{key}\n" for key in self.aws.valid_keys(user)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: sshd asks on every login attempt."""


AKC_SCRIPT = """# AuthorizedKeysCommand: the keys the test's moto says are valid for user $1.
exec {python} -I -c '
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
with opener.open("http://127.0.0.1:{port}/keys/" + sys.argv[1], timeout=5) as answer:
    sys.stdout.write(answer.read().decode())
' "$1"
"""


@pytest.fixture
def instance_connect_sshd(
    moto_aws: MotoAws, sshd_factory: SshdFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sshd]:
    """sshd that, like an EC2 instance, accepts the keys Instance Connect got in the last 60 s."""
    handler = type("KeysHandler", (_KeysHandler,), {"aws": moto_aws})
    keys_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=keys_server.serve_forever, daemon=True)
    thread.start()
    script = tmp_path_factory.mktemp("akc") / "authorized-keys.sh"
    script.write_text(
        AKC_SCRIPT.format(python=shlex.quote(sys.executable), port=keys_server.server_port)
    )
    try:
        # sshd runs the command only if its program and every directory above it are root-owned
        # and not group- or world-writable. /bin/sh is, on any machine, and takes the script (in
        # a temporary directory) as an argument. The command runs as the user running the tests:
        # with or without root, that is the one user this sshd logs in.
        yield sshd_factory(
            extra_config=f"AuthorizedKeysCommand /bin/sh {script} %u\n"
            f"AuthorizedKeysCommandUser {getpass.getuser()}"
        )
    finally:
        keys_server.shutdown()
        keys_server.server_close()
        thread.join(5)
