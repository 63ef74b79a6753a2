"""An instance's console output, read for the SSH host keys it printed at boot."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from app.ec2.console_keys import (
    ConsoleHostKeys,
    ConsoleOutputVerifier,
    console_text,
    parse_console_host_keys,
)
from app.ec2.errors import ConsoleHostKeysMissing
from app.ec2.instances import call_error

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)


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
        raise call_error(exc, action, instance_id, ec2.meta.region_name, ec2) from None
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
