"""Connection plans for EC2 instances, and the plan for whichever target the settings name."""

from __future__ import annotations

from app.ec2.clients import AwsClientCache
from app.ec2.console import console_verifier
from app.ec2.instance_connect import generate_ephemeral_key, push_public_key
from app.ec2.instances import resolve_instance
from app.errors import ConfigurationError
from app.settings import AccessMethod, HostKeyPolicy, Settings, Target
from app.ssh.hostkeys import HostKeyVerifier
from app.ssh.keys import load_key
from app.ssh.plan import ConnectPlan, host_plan, verifier_for


async def instance_plan(
    target: Target, instance_id: str, aws: AwsClientCache | None = None
) -> ConnectPlan:
    """Resolve an EC2 instance; read its console host keys; push a fresh Instance Connect key."""
    aws = aws or AwsClientCache()
    clients = await aws.open(target.region, target.endpoint_url)
    instance = await resolve_instance(clients.ec2, instance_id, target.address)
    # The console is read before any key is pushed, so a refusal leaves nothing behind.
    verifier: HostKeyVerifier
    if target.host_key_policy is HostKeyPolicy.CONSOLE_OUTPUT:
        verifier = await console_verifier(clients.ec2, instance_id)
    else:
        verifier = verifier_for(target)
    instance_connect = target.access_method is AccessMethod.INSTANCE_CONNECT
    if instance_connect:
        key = generate_ephemeral_key()
        await push_public_key(clients.instance_connect, instance, target.user, key, clients.ec2)
    elif target.key_file is None:
        raise ConfigurationError("no SSH key configured: set --key-file")
    else:
        key = load_key(target.key_file)
    return ConnectPlan(
        host=instance.address,
        port=target.port,
        user=target.user,
        client_keys=[key],
        verifier=verifier,
        retry_auth_once=instance_connect,
    )


async def prepare_connection(
    settings: Settings, attempt: int = 0, *, aws: AwsClientCache | None = None
) -> ConnectPlan:
    """Resolve the target and credentials for connection attempt number `attempt`."""
    # The server passes one `aws` cache for its lifetime, so sessions and retries share clients.
    # It lives with EC2, which builds on app/ssh, so that app/ssh knows nothing of AWS.
    target = settings.target
    if target.instance_id is not None:
        return await instance_plan(target, target.instance_id, aws)
    return host_plan(target)
