"""The IAM policies in docs/ec2.md: well formed, scoped, and exactly what each mode calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from app.ec2.errors import AwsAccessDenied
from app.ec2.instance_connect import generate_ephemeral_key
from app.ec2.plan import instance_plan
from app.settings import AccessMethod, HostKeyPolicy, Target
from tests.fixtures_moto import MotoAws, console_with_host_keys

DOC = Path(__file__).resolve().parents[1] / "docs" / "ec2.md"
DESCRIBE = "ec2:DescribeInstances"
PUSH = "ec2-instance-connect:SendSSHPublicKey"
CONSOLE = "ec2:GetConsoleOutput"
MODES: dict[str, tuple[AccessMethod, HostKeyPolicy, set[str]]] = {
    "instance-id": (AccessMethod.SSH_KEY, HostKeyPolicy.FINGERPRINT, {DESCRIBE}),
    "instance-connect": (
        AccessMethod.INSTANCE_CONNECT,
        HostKeyPolicy.FINGERPRINT,
        {DESCRIBE, PUSH},
    ),
    "console-output": (AccessMethod.SSH_KEY, HostKeyPolicy.CONSOLE_OUTPUT, {DESCRIBE, CONSOLE}),
    "instance-connect+console-output": (
        AccessMethod.INSTANCE_CONNECT,
        HostKeyPolicy.CONSOLE_OUTPUT,
        {DESCRIBE, PUSH, CONSOLE},
    ),
}


def documented_policies() -> dict[str, dict[str, Any]]:
    """Each JSON block in docs/ec2.md that follows a `<!-- policy: MODE -->` marker."""
    blocks = re.findall(r"<!-- policy: (\S+) -->\s*```json\n(.*?)```", DOC.read_text(), re.S)
    return {mode: json.loads(body) for mode, body in blocks}


def actions(policy: dict[str, Any]) -> set[str]:
    return {s["Action"] for s in policy["Statement"]}


def test_every_mode_has_a_policy_with_exactly_its_actions() -> None:
    policies = documented_policies()
    assert set(policies) == set(MODES)
    for mode, policy in policies.items():
        assert policy["Version"] == "2012-10-17"
        assert actions(policy) == MODES[mode][2], mode


def test_policies_scope_everything_but_describe_to_instances() -> None:
    for mode, policy in documented_policies().items():
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            if statement["Action"] == DESCRIBE:
                # No resource-level permissions: the region condition is its only scope.
                assert statement["Resource"] == "*", mode
                assert statement["Condition"] == {
                    "StringEquals": {"aws:RequestedRegion": "eu-west-1"}
                }, mode
                continue
            assert statement["Resource"].startswith("arn:aws:ec2:eu-west-1:"), mode
            assert ":instance/" in statement["Resource"], mode
            if statement["Action"] == PUSH:
                assert statement["Condition"] == {"StringEquals": {"ec2:osuser": "ec2-user"}}


def test_the_doc_names_the_other_partitions() -> None:
    text = " ".join(DOC.read_text().split())
    assert "`arn:aws-us-gov:`" in text
    assert "`arn:aws-cn:`" in text
    assert "`aws:RequestedRegion`" in text


def _user_keys(moto_aws: MotoAws, name: str, allowed: set[str]) -> tuple[str, str]:
    """An IAM user allowed `allowed`; returns its access key id and secret."""
    # moto's IAM checks actions but matches neither resource ARNs nor conditions, so the
    # statements here keep the documented actions with Resource "*".
    iam = boto3.client("iam", "us-east-1", endpoint_url=moto_aws.endpoint_url)
    iam.create_user(UserName=name)
    if allowed:
        statement = {"Effect": "Allow", "Action": sorted(allowed), "Resource": "*"}
        document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        iam.put_user_policy(UserName=name, PolicyName="ec2-terminal", PolicyDocument=document)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", sorted(MODES))
async def test_each_mode_works_with_its_actions_and_needs_every_one(
    mode: str, moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    access, policy, needed = MODES[mode]
    instance_id = moto_aws.run_instance()
    moto_aws.consoles[instance_id] = console_with_host_keys(
        [generate_ephemeral_key().export_public_key().decode()]
    )
    key_file = tmp_path / "id_ed25519"
    generate_ephemeral_key().write_private_key(str(key_file))
    target = Target(
        instance_id=instance_id,
        region=moto_aws.region,
        endpoint_url=moto_aws.endpoint_url,
        access_method=access,
        key_file=key_file if access is AccessMethod.SSH_KEY else None,
        host_key_policy=policy,
        host_key_fingerprint="SHA256:" + "A" * 43,
    )
    variants = [("all", needed)] + [(f"no-{a.split(':')[1]}", needed - {a}) for a in needed]
    users = {label: _user_keys(moto_aws, f"{mode}-{label}", allowed) for label, allowed in variants}

    async def plan_as(label: str) -> None:
        key_id, secret = users[label]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        await instance_plan(target, instance_id)

    with moto_aws.iam_enforced():
        await plan_as("all")
        for label, _ in variants[1:]:
            with pytest.raises(AwsAccessDenied):
                await plan_as(label)
