"""EC2 Instance Connect: a fresh in-memory key, pushed to the instance for one login."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncssh
from botocore.exceptions import BotoCoreError, ClientError

from app.ec2.errors import AwsError
from app.ec2.instances import ResolvedInstance, call_error
from app.ssh.hostkeys import sha256

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2_instance_connect import EC2InstanceConnectClient

log = logging.getLogger(__name__)


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
        raise call_error(exc, action, instance.instance_id, region, ec2) from None
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
