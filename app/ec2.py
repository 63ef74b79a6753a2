"""EC2 with boto3: an instance's address, Instance Connect keys, host keys from the console."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncssh
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.console_keys import (
    ConsoleHostKeys,
    ConsoleOutputVerifier,
    console_text,
    parse_console_host_keys,
)
from app.ec2_errors import (
    AwsError,
    AwsRegionUnknown,
    ConsoleHostKeysMissing,
    InstanceAddressMissing,
    InstanceNotFound,
    InstanceNotRunning,
    aws_error,
    state_advice,
)
from app.errors import TerminalError
from app.settings import AddressKind
from app.ssh.hostkeys import sha256

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import InstanceTypeDef
    from mypy_boto3_ec2_instance_connect import EC2InstanceConnectClient

log = logging.getLogger(__name__)

# Standard mode retries throttling and transient errors with exponential backoff and jitter;
# 5 attempts in all (botocore's `max_attempts` would count retries only, making it 6).
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 5},
    connect_timeout=5,
    read_timeout=15,
    user_agent_extra="ec2-terminal",
)


@dataclass(frozen=True)
class AwsClients:
    """The two boto3 clients one target needs (boto3 clients are thread-safe)."""

    ec2: EC2Client
    instance_connect: EC2InstanceConnectClient
    region: str


@dataclass(frozen=True)
class ResolvedInstance:
    """A running instance and the address to reach it by."""

    instance_id: str
    address: str
    availability_zone: str
    state: str
    public_address: str | None
    private_address: str | None


def known_regions(session: boto3.session.Session) -> set[str]:
    """Every EC2 region botocore knows, in every partition."""
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return regions


def checked_region(session: boto3.session.Session, region: str | None) -> str:
    """The region to use: given, else from the environment or profile; refused if unknown."""
    # botocore reads AWS_DEFAULT_REGION; EKS and Lambda set AWS_REGION, so honour it too.
    region = region or session.region_name or os.environ.get("AWS_REGION")
    if not region:
        raise AwsRegionUnknown(
            "no AWS region configured: set --region, AWS_REGION or AWS_DEFAULT_REGION"
        )
    if region not in known_regions(session):
        # An unknown name would otherwise become a DNS failure for ec2.<region>.amazonaws.com.
        raise AwsRegionUnknown(
            f"{region!r} is not an AWS region this botocore knows (for example us-east-1); "
            "check --region, or upgrade boto3 if the region is new"
        )
    return region


def make_clients(
    region: str | None,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
) -> AwsClients:
    """Clients for EC2 and EC2 Instance Connect from the usual credential chain (blocking)."""
    session = session or boto3.session.Session()
    region = checked_region(session, region)
    try:
        ec2 = session.client("ec2", region, endpoint_url=endpoint_url, config=CLIENT_CONFIG)
        connect = session.client(
            "ec2-instance-connect", region, endpoint_url=endpoint_url, config=CLIENT_CONFIG
        )
    except (BotoCoreError, ValueError) as exc:
        raise aws_error(exc, "creating AWS clients", "-") from None
    return AwsClients(ec2=ec2, instance_connect=connect, region=region)


class AwsClientCache:
    """AwsClients per (region, endpoint URL), made once from one boto3 session under a lock."""

    # boto3 clients are thread-safe and are shared by every session and retry; a boto3 Session
    # is not, so it is only touched with the lock held (make_clients runs in worker threads).

    def __init__(
        self, session_factory: Callable[[], boto3.session.Session] = boto3.session.Session
    ) -> None:
        self._session_factory = session_factory
        self._session: boto3.session.Session | None = None
        self._clients: dict[tuple[str | None, str | None], AwsClients] = {}
        self._lock = threading.Lock()

    def get(self, region: str | None, endpoint_url: str | None = None) -> AwsClients:
        """The clients for this region and endpoint, made on first use (blocking)."""
        key = (region, endpoint_url)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                return found
            if self._session is None:
                self._session = self._session_factory()
            clients = make_clients(region, endpoint_url, self._session)
            # A client binds the credentials found when it is made. Without any, keep nothing:
            # a later call makes a fresh session that looks again (a mounted token, a fixed
            # environment) instead of failing with NoCredentials forever.
            if self._session.get_credentials() is None:
                self._session = None
            else:
                self._clients[key] = clients
            return clients

    async def open(self, region: str | None, endpoint_url: str | None = None) -> AwsClients:
        """get() off the event loop: the first call per key loads botocore's service models."""
        return await asyncio.to_thread(self.get, region, endpoint_url)


def _state(described: InstanceTypeDef) -> str:
    return str(described.get("State", {}).get("Name", "unknown"))


def _describe(ec2: EC2Client, instance_id: str) -> InstanceTypeDef:
    try:
        response = ec2.describe_instances(InstanceIds=[instance_id])
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, "ec2:DescribeInstances", instance_id, ec2.meta.region_name) from None
    for reservation in response.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            if instance.get("InstanceId") == instance_id:
                return instance
    raise InstanceNotFound(
        f"instance {instance_id} does not exist in region {ec2.meta.region_name}; "
        "check --instance-id and --region"
    )


def _state_now(ec2: EC2Client, instance_id: str) -> str | None:
    """The instance's state by a fresh DescribeInstances, or None if that fails too."""
    try:
        return _state(_describe(ec2, instance_id))
    except AwsError:
        return None


def _call_error(
    exc: Exception, action: str, instance_id: str, region: str, ec2: EC2Client | None
) -> TerminalError:
    """aws_error for a call on a resolved instance; "not running" is told with the state now."""
    error = aws_error(exc, action, instance_id, region)
    if isinstance(error, InstanceNotRunning) and ec2 is not None:
        error = aws_error(exc, action, instance_id, region, _state_now(ec2, instance_id))
    return error


def _resolve(ec2: EC2Client, instance_id: str, address: AddressKind) -> ResolvedInstance:
    described = _describe(ec2, instance_id)
    state = _state(described)
    if state != "running":
        raise InstanceNotRunning(
            f"instance {instance_id} is {state}, not running; {state_advice(state)}"
        )
    public = described.get("PublicIpAddress") or described.get("PublicDnsName") or None
    private = described.get("PrivateIpAddress") or described.get("PrivateDnsName") or None
    chosen = public if address is AddressKind.PUBLIC else private
    if not chosen:
        other = "--address private" if address is AddressKind.PUBLIC else "--address public"
        raise InstanceAddressMissing(
            f"instance {instance_id} ({state}) has no {address.value} address; "
            f"give it one or use {other}"
        )
    zone = str(described.get("Placement", {}).get("AvailabilityZone", ""))
    log.info("instance %s is %s in %s at %s", instance_id, state, zone, chosen)
    return ResolvedInstance(instance_id, chosen, zone, state, public, private)


async def resolve_instance(
    ec2: EC2Client, instance_id: str, address: AddressKind = AddressKind.PUBLIC
) -> ResolvedInstance:
    """The running instance's public or private address, from DescribeInstances."""
    return await asyncio.to_thread(_resolve, ec2, instance_id, address)


def generate_ephemeral_key() -> asyncssh.SSHKey:
    """A fresh ed25519 key pair that lives only in memory."""
    return asyncssh.generate_private_key("ssh-ed25519", comment="ec2-terminal")


def _send_public_key(
    instance_connect: EC2InstanceConnectClient,
    instance: ResolvedInstance,
    os_user: str,
    public_key: str,
    ec2: EC2Client | None,
) -> None:
    action = "ec2-instance-connect:SendSSHPublicKey"
    try:
        response = instance_connect.send_ssh_public_key(
            InstanceId=instance.instance_id,
            InstanceOSUser=os_user,
            SSHPublicKey=public_key,
            AvailabilityZone=instance.availability_zone,
        )
    except (ClientError, BotoCoreError) as exc:
        region = instance_connect.meta.region_name
        raise _call_error(exc, action, instance.instance_id, region, ec2) from None
    if not response.get("Success", False):
        raise AwsError(f"{action} for instance {instance.instance_id} did not succeed")


async def push_public_key(
    instance_connect: EC2InstanceConnectClient,
    instance: ResolvedInstance,
    os_user: str,
    key: asyncssh.SSHKey,
    ec2: EC2Client | None = None,
) -> None:
    """Publish `key`'s public half to the instance for `os_user` for the next 60 seconds."""
    # With `ec2`, a push refused as "not running" is reported with the instance's state.
    public = key.export_public_key("openssh").decode("ascii").strip()
    await asyncio.to_thread(_send_public_key, instance_connect, instance, os_user, public, ec2)
    log.info(
        "pushed ephemeral key %s for user %s to instance %s",
        sha256(key),
        os_user,
        instance.instance_id,
    )


def _console_output(ec2: EC2Client, instance_id: str) -> str:
    action = "ec2:GetConsoleOutput"
    try:
        try:
            response = ec2.get_console_output(InstanceId=instance_id, Latest=True)
        except ClientError as exc:
            # Latest is only for Nitro instances; the others answer without it.
            if exc.response.get("Error", {}).get("Code") not in (
                "UnsupportedOperation",
                "InvalidParameterCombination",
                "InvalidParameterValue",
            ):
                raise
            response = ec2.get_console_output(InstanceId=instance_id)
    except (ClientError, BotoCoreError) as exc:
        raise _call_error(exc, action, instance_id, ec2.meta.region_name, ec2) from None
    return console_text(response.get("Output"))


async def console_host_keys(ec2: EC2Client, instance_id: str) -> ConsoleHostKeys:
    """The host keys the instance printed to its console; fails closed when there are none."""
    text = await asyncio.to_thread(_console_output, ec2, instance_id)
    found = parse_console_host_keys(text)
    if found.empty:
        raise ConsoleHostKeysMissing(
            f"instance {instance_id} has not printed its SSH host keys to the console yet; "
            "try again in a minute, or pin a fingerprint with --host-key-policy fingerprint"
        )
    log.info(
        "console of instance %s lists host keys %s",
        instance_id,
        ", ".join(sorted(found.trusted_fingerprints)),
    )
    return found


async def console_verifier(ec2: EC2Client, instance_id: str) -> ConsoleOutputVerifier:
    """A host key verifier that trusts only what the instance's console lists."""
    return ConsoleOutputVerifier(instance_id, await console_host_keys(ec2, instance_id))


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
