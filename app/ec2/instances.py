"""An instance by id: its state and the address to reach it by, from DescribeInstances."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from app.ec2.errors import (
    AwsError,
    InstanceAddressMissing,
    InstanceNotFound,
    InstanceNotRunning,
    aws_error,
    state_advice,
)
from app.errors import TerminalError
from app.settings import AddressKind

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedInstance:
    """A running instance and the address to reach it by."""

    instance_id: str
    address: str
    availability_zone: str
    state: str
    public_address: str | None
    private_address: str | None


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


def call_error(
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
