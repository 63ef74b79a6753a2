"""app.ec2 against moto's server over HTTP: resolution, Instance Connect pushes, console keys."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import asyncssh
import boto3
import pytest

from app.ec2.clients import AwsClientCache, AwsClients, make_clients
from app.ec2.console import console_host_keys, console_verifier
from app.ec2.console_keys import ConsoleOutputVerifier
from app.ec2.errors import (
    AwsAccessDenied,
    AwsCredentialsMissing,
    AwsCredentialsRejected,
    AwsRegionUnknown,
    AwsThrottled,
    AwsUnreachable,
    ConsoleHostKeysMissing,
    InstanceAddressMissing,
    InstanceIdMalformed,
    InstanceNotFound,
    InstanceNotRunning,
    aws_error,
)
from app.ec2.instance_connect import generate_ephemeral_key, push_public_key
from app.ec2.instances import resolve_instance
from app.ec2.plan import prepare_connection
from app.ec2.readiness import aws_ready_problem
from app.errors import TerminalError
from app.settings import AccessMethod, AddressKind, HostKeyPolicy, Limits, Settings, Target
from app.ssh.errors import HostKeyNotVerifiable
from tests.fixtures_moto import MotoAws
from tests.support import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def clients(moto_aws: MotoAws) -> AwsClients:
    return make_clients(moto_aws.region, moto_aws.endpoint_url)


async def test_public_address(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance(public_ip="127.0.0.1")
    resolved = await resolve_instance(clients.ec2, instance_id, AddressKind.PUBLIC)
    assert resolved.address == "127.0.0.1"
    assert resolved.state == "running"
    assert resolved.availability_zone == f"{moto_aws.region}a"
    assert resolved.instance_id == instance_id


async def test_private_address(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance(public_ip=None, private_ip="10.1.2.3")
    resolved = await resolve_instance(clients.ec2, instance_id, AddressKind.PRIVATE)
    assert resolved.address == "10.1.2.3"
    assert resolved.public_address is None


async def test_missing_public_address_is_named(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance(public_ip=None)
    with pytest.raises(InstanceAddressMissing) as caught:
        await resolve_instance(clients.ec2, instance_id, AddressKind.PUBLIC)
    assert instance_id in str(caught.value)
    assert "no public address" in str(caught.value)
    assert "--address private" in str(caught.value)


async def test_stopped_instance(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance()
    moto_aws.stop_instance(instance_id)
    with pytest.raises(InstanceNotRunning) as caught:
        await resolve_instance(clients.ec2, instance_id)
    assert f"instance {instance_id} is stopped" in str(caught.value)
    assert caught.value.code == "instance_not_running"


async def test_terminated_instance(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance()
    moto_aws.terminate_instance(instance_id)
    with pytest.raises(InstanceNotRunning, match=f"{instance_id} is terminated"):
        await resolve_instance(clients.ec2, instance_id)


async def test_pending_instance(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance()
    moto_aws.set_state(instance_id, "pending", 0)
    with pytest.raises(InstanceNotRunning, match="is pending, not running; wait"):
        await resolve_instance(clients.ec2, instance_id)


async def test_unknown_instance_id(moto_aws: MotoAws, clients: AwsClients) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        await resolve_instance(clients.ec2, "i-0123456789abcdef0")
    assert f"instance i-0123456789abcdef0 does not exist in {moto_aws.region}" in str(caught.value)
    assert caught.value.code == "instance_not_found"


async def test_a_malformed_instance_id_is_called_malformed(
    moto_aws: MotoAws, clients: AwsClients
) -> None:
    # moto answers NotFound for any id; AWS says Malformed for one that is not i-<hex>.
    moto_aws.fail_next("DescribeInstances", "InvalidInstanceID.Malformed")
    with pytest.raises(InstanceIdMalformed) as caught:
        await resolve_instance(clients.ec2, "i-0123456789abcdefg")
    message = str(caught.value)
    assert "instance id 'i-0123456789abcdefg' is malformed" in message
    assert "does not exist" not in message
    assert caught.value.code == "instance_id_malformed"
    assert isinstance(caught.value, InstanceNotFound)


async def test_a_push_refused_as_not_running_names_the_instance_region_and_state(
    moto_aws: MotoAws, clients: AwsClients
) -> None:
    instance_id = moto_aws.run_instance()
    resolved = await resolve_instance(clients.ec2, instance_id)
    # Stopped between DescribeInstances and SendSSHPublicKey.
    moto_aws.stop_instance(instance_id)
    moto_aws.fail_next("SendSSHPublicKey", "EC2InstanceStateInvalidException")
    key = generate_ephemeral_key()
    with pytest.raises(InstanceNotRunning) as caught:
        await push_public_key(clients.instance_connect, resolved, "ec2-user", key, clients.ec2)
    assert str(caught.value) == (
        f"instance {instance_id} in {moto_aws.region} is stopped, not running "
        "(ec2-instance-connect:SendSSHPublicKey answered EC2InstanceStateInvalidException); "
        "start it and try again"
    )
    assert caught.value.code == "instance_not_running"

    # Without a way to look the state up, the message still names the instance and region.
    moto_aws.fail_next("SendSSHPublicKey", "EC2InstanceStateInvalidException")
    with pytest.raises(InstanceNotRunning) as caught:
        await push_public_key(clients.instance_connect, resolved, "ec2-user", key)
    assert f"instance {instance_id} in {moto_aws.region} is not running" in str(caught.value)


async def test_console_output_refused_as_not_running_names_the_state(
    moto_aws: MotoAws, clients: AwsClients
) -> None:
    instance_id = moto_aws.run_instance()
    moto_aws.terminate_instance(instance_id)
    moto_aws.fail_next("GetConsoleOutput", "IncorrectInstanceState")
    with pytest.raises(InstanceNotRunning) as caught:
        await console_host_keys(clients.ec2, instance_id)
    message = str(caught.value)
    assert f"instance {instance_id} in {moto_aws.region} is terminated, not running" in message
    assert "ec2:GetConsoleOutput answered IncorrectInstanceState" in message
    assert "use another instance" in message


async def test_throttling_is_retried_by_botocore(moto_aws: MotoAws, clients: AwsClients) -> None:
    """Standard retry mode: a throttled call is sent again after a backoff and succeeds."""
    for client in (clients.ec2, clients.instance_connect):
        assert vars(client.meta.config)["retries"] == {"mode": "standard", "total_max_attempts": 5}
    instance_id = moto_aws.run_instance()
    moto_aws.fail_next("DescribeInstances", "RequestLimitExceeded")
    resolved = await resolve_instance(clients.ec2, instance_id)
    assert resolved.instance_id == instance_id
    assert moto_aws.requests["DescribeInstances"] == 2
    assert moto_aws.failures["DescribeInstances"] == []

    moto_aws.fail_next("SendSSHPublicKey", "ThrottlingException")
    await push_public_key(clients.instance_connect, resolved, "ec2-user", generate_ephemeral_key())
    assert moto_aws.requests["SendSSHPublicKey"] == 2
    assert len(moto_aws.pushed) == 1


async def test_missing_credentials(moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = moto_aws.run_instance()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    clients = make_clients(moto_aws.region, moto_aws.endpoint_url)
    with pytest.raises(AwsCredentialsMissing) as caught:
        await resolve_instance(clients.ec2, instance_id)
    assert "no usable AWS credentials for ec2:DescribeInstances" in str(caught.value)
    assert caught.value.code == "aws_no_credentials"


def test_unknown_region_is_refused_before_any_call(moto_aws: MotoAws) -> None:
    with pytest.raises(AwsRegionUnknown) as caught:
        make_clients("mars-north-1", moto_aws.endpoint_url)
    assert "'mars-north-1' is not an AWS region" in str(caught.value)
    assert caught.value.code == "aws_unknown_region"


def test_no_region_at_all(aws_env: None) -> None:
    with pytest.raises(AwsRegionUnknown, match="no AWS region configured"):
        make_clients(None)


async def test_region_from_the_environment(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", moto_aws.region)
    clients = await AwsClientCache().open(None, moto_aws.endpoint_url)
    assert clients.region == moto_aws.region


async def test_unreachable_endpoint(aws_env: None) -> None:
    clients = make_clients("eu-west-1", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(AwsUnreachable) as caught:
        await resolve_instance(clients.ec2, "i-0123456789abcdef0")
    assert "could not reach http://127.0.0.1:" in str(caught.value)


async def test_push_records_key_user_and_zone(moto_aws: MotoAws, clients: AwsClients) -> None:
    instance_id = moto_aws.run_instance()
    resolved = await resolve_instance(clients.ec2, instance_id)
    key = generate_ephemeral_key()
    await push_public_key(clients.instance_connect, resolved, "ec2-user", key)
    [pushed] = moto_aws.pushed
    assert pushed.instance_id == instance_id
    assert pushed.os_user == "ec2-user"
    assert pushed.availability_zone == resolved.availability_zone
    assert asyncssh.import_public_key(pushed.public_key).public_data == key.public_data
    assert "PRIVATE" not in pushed.public_key
    assert key.algorithm == b"ssh-ed25519"


def test_ephemeral_keys_are_fresh_each_time() -> None:
    assert generate_ephemeral_key().public_data != generate_ephemeral_key().public_data


async def test_console_without_host_keys_fails_closed(
    moto_aws: MotoAws, clients: AwsClients
) -> None:
    instance_id = moto_aws.run_instance()
    with pytest.raises(ConsoleHostKeysMissing) as caught:
        await console_host_keys(clients.ec2, instance_id)
    assert f"instance {instance_id} has not printed its SSH host keys" in str(caught.value)
    assert isinstance(caught.value, HostKeyNotVerifiable)


async def test_console_host_keys_per_instance(moto_aws: MotoAws, clients: AwsClients) -> None:
    with_keys, without = moto_aws.run_instance(), moto_aws.run_instance()
    host_key = generate_ephemeral_key()
    line = host_key.export_public_key().decode().strip()
    moto_aws.consoles[with_keys] = (
        f"boot\n-----BEGIN SSH HOST KEY KEYS-----\n{line}\n-----END SSH HOST KEY KEYS-----\n"
    )
    verifier = await console_verifier(clients.ec2, with_keys)
    assert isinstance(verifier, ConsoleOutputVerifier)
    verifier.verify("127.0.0.1", 22, host_key)
    with pytest.raises(HostKeyNotVerifiable):
        verifier.verify("127.0.0.1", 22, generate_ephemeral_key())
    with pytest.raises(ConsoleHostKeysMissing):
        await console_host_keys(clients.ec2, without)


def _client_error(code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}}, "DescribeInstances")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("UnauthorizedOperation", AwsAccessDenied),
        ("AccessDeniedException", AwsAccessDenied),
        ("AuthFailure", AwsCredentialsRejected),
        ("RequestLimitExceeded", AwsThrottled),
        ("ThrottlingException", AwsThrottled),
        ("InvalidInstanceID.Malformed", InstanceIdMalformed),
        ("InvalidInstanceID.NotFound", InstanceNotFound),
        ("EC2InstanceStateInvalidException", InstanceNotRunning),
    ],
)
def test_client_error_codes_map_to_user_errors(code: str, kind: type[TerminalError]) -> None:
    error = aws_error(_client_error(code), "ec2:DescribeInstances", "i-0123456789abcdef0")
    assert type(error) is kind
    assert code in str(error)


def test_region_is_named_where_it_helps() -> None:
    instance_id = "i-0123456789abcdef0"
    for code in ("InvalidInstanceID.NotFound", "UnauthorizedOperation", "IncorrectInstanceState"):
        error = aws_error(_client_error(code), "ec2:DescribeInstances", instance_id, "eu-west-1")
        assert f"instance {instance_id} " in str(error)
        assert " in eu-west-1" in str(error), code
    running = aws_error(
        _client_error("IncorrectInstanceState"), "ec2:X", instance_id, "eu-west-1", "pending"
    )
    assert str(running).startswith(f"instance {instance_id} in eu-west-1 is pending, not running")
    assert "wait until it is running" in str(running)


async def test_access_denied_from_the_api(moto_aws: MotoAws, clients: AwsClients) -> None:
    """moto enforces IAM when asked to: a user without ec2:DescribeInstances is refused."""
    instance_id = moto_aws.run_instance()
    iam = boto3.client("iam", "us-east-1", endpoint_url=moto_aws.endpoint_url)
    iam.create_user(UserName="nobody")
    access = iam.create_access_key(UserName="nobody")["AccessKey"]
    session = boto3.session.Session(
        aws_access_key_id=access["AccessKeyId"],
        aws_secret_access_key=access["SecretAccessKey"],
    )
    denied = make_clients(moto_aws.region, moto_aws.endpoint_url, session)
    with moto_aws.iam_enforced(), pytest.raises(AwsAccessDenied) as caught:
        await resolve_instance(denied.ec2, instance_id)
    assert "not allowed to call ec2:DescribeInstances" in str(caught.value)
    assert access["SecretAccessKey"] not in str(caught.value)


def test_ready_problem_names_what_is_missing(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws_ready_problem(moto_aws.region) is None
    assert "not an AWS region" in str(aws_ready_problem("mars-north-1"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert "no AWS credentials found" in str(aws_ready_problem(moto_aws.region))


class CountingSessions:
    """A boto3 session factory that counts the sessions it makes."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> boto3.session.Session:
        self.made += 1
        return boto3.session.Session()


def test_client_cache_makes_clients_once_per_region_and_endpoint(moto_aws: MotoAws) -> None:
    sessions = CountingSessions()
    cache = AwsClientCache(sessions)
    first = cache.get(moto_aws.region, moto_aws.endpoint_url)
    assert cache.get(moto_aws.region, moto_aws.endpoint_url) is first
    other_region = cache.get("us-east-1", moto_aws.endpoint_url)
    other_endpoint = cache.get(moto_aws.region, moto_aws.endpoint_url + "/")
    assert len({id(first), id(other_region), id(other_endpoint)}) == 3
    assert other_region.region == "us-east-1"
    assert sessions.made == 1
    # A refused region is not cached and costs no new session.
    with pytest.raises(AwsRegionUnknown):
        cache.get("mars-north-1")
    assert sessions.made == 1


def test_client_cache_is_safe_across_threads(moto_aws: MotoAws) -> None:
    sessions = CountingSessions()
    cache = AwsClientCache(sessions)
    start = threading.Barrier(8, timeout=10)

    def get(_: int) -> AwsClients:
        start.wait()
        return cache.get(moto_aws.region, moto_aws.endpoint_url)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(get, range(8), timeout=30))
    assert all(clients is got[0] for clients in got)
    assert sessions.made == 1


async def test_sessions_and_retries_share_the_servers_clients(moto_aws: MotoAws) -> None:
    instance_id = moto_aws.run_instance()
    settings = Settings(
        target=Target(
            instance_id=instance_id,
            region=moto_aws.region,
            endpoint_url=moto_aws.endpoint_url,
            access_method=AccessMethod.INSTANCE_CONNECT,
            host_key_policy=HostKeyPolicy.FINGERPRINT,
            host_key_fingerprint="SHA256:" + "A" * 43,
        ),
        limits=Limits(),
        token="t",
    )
    sessions = CountingSessions()
    aws = AwsClientCache(sessions)
    for attempt in (0, 1, 0):
        plan = await prepare_connection(settings, attempt, aws=aws)
        assert plan.host == "127.0.0.1"
    assert len(moto_aws.pushed) == 3
    assert sessions.made == 1


async def test_clients_made_without_credentials_are_not_kept(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance_id = moto_aws.run_instance()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    sessions = CountingSessions()
    cache = AwsClientCache(sessions)
    without = await cache.open(moto_aws.region, moto_aws.endpoint_url)
    with pytest.raises(AwsCredentialsMissing):
        await resolve_instance(without.ec2, instance_id)
    # The credentials appear (a mounted token, a fixed environment): the next session has them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    later = await cache.open(moto_aws.region, moto_aws.endpoint_url)
    assert later is not without
    assert (await resolve_instance(later.ec2, instance_id)).instance_id == instance_id
    assert await cache.open(moto_aws.region, moto_aws.endpoint_url) is later
    assert sessions.made == 2
