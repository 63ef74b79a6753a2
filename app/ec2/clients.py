"""boto3 clients for EC2 and EC2 Instance Connect: region checks, retries, one cache per server."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from app.ec2.errors import AwsRegionUnknown, aws_error

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2_instance_connect import EC2InstanceConnectClient

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
