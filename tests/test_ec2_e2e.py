"""EC2 end to end: moto for AWS, OpenSSH sshd as the instance, the real session server between."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from app.ec2.clients import make_clients
from app.ec2.instance_connect import generate_ephemeral_key, push_public_key
from app.ec2.instances import resolve_instance
from app.ssh.hostkeys import sha256
from tests.fixtures_moto import KEY_LIFETIME, MotoAws, PushedKey, console_with_host_keys
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.wsclient import TerminalClient, open_client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def connected(client: TerminalClient) -> bool:
    return any(s["state"] == "connected" for s in client.statuses)


async def attempt(server: RunningServer) -> TerminalClient:
    """Open a terminal and read until it is connected or the server sends an ERROR."""
    client = await open_client(server.base_url, server.token)
    await client.hello()
    await client.until(lambda c: c.error is not None or connected(c), timeout=45)
    return client


async def shell_answers(client: TerminalClient) -> None:
    await client.send_input("echo $((6*7))\r")
    await client.until(lambda c: re.search(r"[\r\n]42\r\n", c.text) is not None)


def start_server(
    server_factory: ServerFactory,
    moto_aws: MotoAws,
    sshd: Sshd,
    instance_id: str,
    **flags: Any,
) -> RunningServer:
    return server_factory(
        None,
        env=moto_aws.env(),
        instance_id=instance_id,
        region=moto_aws.region,
        endpoint_url=moto_aws.endpoint_url,
        port=sshd.port,
        user=sshd.user,
        **flags,
    )


def accepted_fingerprints(sshd: Sshd) -> list[str]:
    """Fingerprints of the keys sshd accepted, in order, from its log."""
    return re.findall(
        r"Accepted publickey for \S+ from \S+ port \d+ ssh2: \S+ (SHA256:\S+)", sshd.log()
    )


def fingerprint_of(pushed: PushedKey) -> str:
    return sha256(asyncssh.import_public_key(pushed.public_key))


def start_instance_connect_server(
    server_factory: ServerFactory,
    moto_aws: MotoAws,
    sshd: Sshd,
    instance_id: str,
    host_key_policy: str = "console-output",
) -> RunningServer:
    """A server reaching the instance with Instance Connect: by default no long-lived key and no
    known_hosts, everything from the AWS APIs; with "known-hosts", the sshd's known_hosts."""
    flags = {"known_hosts": str(sshd.known_hosts_path)} if host_key_policy == "known-hosts" else {}
    return start_server(
        server_factory,
        moto_aws,
        sshd,
        instance_id,
        access_method="instance-connect",
        host_key_policy=host_key_policy,
        **flags,
    )


async def test_a_pushed_key_logs_in_for_60_seconds_only(
    moto_aws: MotoAws, instance_connect_sshd: Sshd
) -> None:
    sshd = instance_connect_sshd
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    clients = make_clients(moto_aws.region, moto_aws.endpoint_url)
    instance = await resolve_instance(clients.ec2, instance_id)
    key = generate_ephemeral_key()
    options: dict[str, Any] = {
        "port": sshd.port,
        "username": sshd.user,
        "known_hosts": str(sshd.known_hosts_path),
        "agent_path": None,
        "config": [],
        "preferred_auth": "publickey",
    }

    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(instance.address, client_keys=[key], **options)

    await push_public_key(clients.instance_connect, instance, sshd.user, key)
    async with asyncssh.connect(instance.address, client_keys=[key], **options) as conn:
        assert (await conn.run("echo pushed", check=True)).stdout == "pushed\n"

    moto_aws.clock.advance(KEY_LIFETIME + 1)
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(instance.address, client_keys=[key], **options)


async def test_instance_connect_with_console_host_keys(
    moto_aws: MotoAws, instance_connect_sshd: Sshd, server_factory: ServerFactory
) -> None:
    sshd = instance_connect_sshd
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    moto_aws.consoles[instance_id] = console_with_host_keys([sshd.host_public_key])
    server = start_instance_connect_server(server_factory, moto_aws, sshd, instance_id)
    client = await attempt(server)
    assert client.error is None, client.error
    assert client.statuses[-1]["host_key_sha256"] == sshd.host_key_sha256
    await shell_answers(client)
    [pushed] = moto_aws.pushed
    assert (pushed.instance_id, pushed.os_user) == (instance_id, sshd.user)
    assert pushed.availability_zone == f"{moto_aws.region}a"
    assert accepted_fingerprints(sshd) == [fingerprint_of(pushed)]
    assert "PRIVATE KEY" not in server.log()
    for path in filter(Path.is_file, server.log_path.parent.rglob("*")):
        assert b"PRIVATE KEY" not in path.read_bytes(), f"a private key was written to {path}"
    await client.ws.close()


async def test_a_key_that_arrives_late_is_pushed_again_once(
    moto_aws: MotoAws, instance_connect_sshd: Sshd, server_factory: ServerFactory
) -> None:
    sshd = instance_connect_sshd
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    # The first key reaches the instance only after the login: the race the retry is for.
    moto_aws.push_delays.append(5.0)
    server = start_instance_connect_server(
        server_factory, moto_aws, sshd, instance_id, host_key_policy="known-hosts"
    )
    client = await attempt(server)
    assert client.error is None, client.error
    await shell_answers(client)
    first, second = moto_aws.pushed
    assert first.public_key != second.public_key
    assert accepted_fingerprints(sshd) == [fingerprint_of(second)]
    await client.ws.close()


async def test_keys_older_than_60_seconds_are_refused(
    moto_aws: MotoAws, instance_connect_sshd: Sshd, server_factory: ServerFactory
) -> None:
    sshd = instance_connect_sshd
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    # Every key is 61 seconds old by the time the server logs in with it.
    moto_aws.on_push = lambda pushed: moto_aws.clock.advance(KEY_LIFETIME + 1)
    server = start_instance_connect_server(
        server_factory, moto_aws, sshd, instance_id, host_key_policy="known-hosts"
    )
    client = await attempt(server)
    assert client.error is not None
    assert client.error["code"] == "auth_failed"
    assert len(moto_aws.pushed) == 2, "one push, then exactly one retry"
    assert accepted_fingerprints(sshd) == []


async def test_console_output_holding_the_real_host_key_connects(
    moto_aws: MotoAws, sshd: Sshd, server_factory: ServerFactory
) -> None:
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    moto_aws.consoles[instance_id] = console_with_host_keys([sshd.host_public_key])
    server = start_server(
        server_factory,
        moto_aws,
        sshd,
        instance_id,
        key_file=str(sshd.client_key_path),
        host_key_policy="console-output",
    )
    client = await attempt(server)
    assert client.error is None, client.error
    assert client.statuses[-1]["host_key_sha256"] == sshd.host_key_sha256
    await shell_answers(client)
    await client.ws.close()


async def test_console_output_holding_another_key_is_refused(
    moto_aws: MotoAws, sshd: Sshd, server_factory: ServerFactory
) -> None:
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    other = generate_ephemeral_key()
    moto_aws.consoles[instance_id] = console_with_host_keys([other.export_public_key().decode()])
    server = start_server(
        server_factory,
        moto_aws,
        sshd,
        instance_id,
        key_file=str(sshd.client_key_path),
        host_key_policy="console-output",
    )
    client = await attempt(server)
    assert client.error is not None
    assert client.error["code"] == "host_key_mismatch"
    message = client.error["message"]
    assert instance_id in message
    assert sshd.host_key_sha256 in message
    assert sha256(other) in message
    assert "console output lists" in message


async def test_console_without_host_keys_is_refused(
    moto_aws: MotoAws, sshd: Sshd, server_factory: ServerFactory
) -> None:
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    server = start_instance_connect_server(server_factory, moto_aws, sshd, instance_id)
    client = await attempt(server)
    assert client.error is not None
    assert client.error["code"] == "host_keys_not_on_console"
    assert f"instance {instance_id} has not printed its SSH host keys" in client.error["message"]
    assert moto_aws.pushed == [], "no key is pushed to a host that cannot be verified"


async def test_aws_errors_become_error_frames(
    moto_aws: MotoAws, sshd: Sshd, server_factory: ServerFactory
) -> None:
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    moto_aws.stop_instance(instance_id)
    server = start_instance_connect_server(server_factory, moto_aws, sshd, instance_id)
    client = await attempt(server)
    assert client.error == {
        "code": "instance_not_running",
        "message": f"instance {instance_id} is stopped, not running; start it and try again",
    }

    no_credentials = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    server = server_factory(
        None,
        env=moto_aws.env() | no_credentials,
        instance_id=instance_id,
        region=moto_aws.region,
        endpoint_url=moto_aws.endpoint_url,
        access_method="instance-connect",
        host_key_policy="console-output",
    )
    client = await attempt(server)
    assert client.error is not None
    assert client.error["code"] == "aws_no_credentials"
