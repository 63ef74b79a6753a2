"""admission.py and policy.py: what the operator's policy lets a session have (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from ec2_terminal_operator import admission, resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.policy import PodPolicy, PolicyError, Toleration
from ec2_terminal_operator.spec import parse_session

from tests.test_operator_units import body

DEFAULT_IMAGE = "registry.example.com/ec2-terminal:1.0"


def session(**spec: Any) -> Any:
    return parse_session(body(**spec))


def check(policy: PodPolicy, **pod: Any) -> tuple[bool, str, str]:
    result = admission.check_pod(session(pod=pod), DEFAULT_IMAGE, policy)
    return result.ok, result.reason, result.message


def test_by_default_only_the_operators_own_image_runs() -> None:
    assert check(PodPolicy())[0]
    assert check(PodPolicy(), image=DEFAULT_IMAGE)[0]
    ok, reason, message = check(PodPolicy(), image="attacker.example/shell:latest")
    assert (ok, reason) == (False, "ImageNotAllowed")
    assert "'attacker.example/shell:latest' is not allowed" in message
    assert DEFAULT_IMAGE in message


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("registry.example.com/ec2-terminal:2.0", True),
        ("registry.example.com/ec2-terminal@sha256:abc", False),
        ("registry.example.com/ec2-terminal-evil:2.0", False),
        ("registry.example.com/team/anything:1", True),
        ("registry.example.com/teamx/anything:1", False),
        ("mirror.local/exact:1", True),
        ("mirror.local/exact:2", False),
    ],
)
def test_allowed_images_are_exact_or_whole_prefixes(image: str, allowed: bool) -> None:
    policy = PodPolicy(
        allowed_images=(
            "registry.example.com/ec2-terminal:*",
            "registry.example.com/team/*",
            "mirror.local/exact:1",
        )
    )
    assert check(policy, image=image)[0] is allowed


@pytest.mark.parametrize("pattern", ["registry.example.com/ec2-terminal*", "reg*/x:1", "*"])
def test_a_prefix_that_could_match_too_much_is_refused(pattern: str) -> None:
    with pytest.raises(PolicyError, match="allowed image"):
        PodPolicy(allowed_images=(pattern,))


def test_scheduling_is_refused_unless_listed() -> None:
    ok, reason, message = check(PodPolicy(), nodeSelector={"pool": "gpu"})
    assert (ok, reason) == (False, "NodeSelectorNotAllowed")
    assert "pool=gpu" in message
    assert "none are allowed" in message
    policy = PodPolicy(allowed_node_selectors={"pool": ("terminals",), "zone": ("*",)})
    assert check(policy, nodeSelector={"pool": "terminals", "zone": "eu-1a"})[0]
    assert not check(policy, nodeSelector={"pool": "gpu"})[0]
    control_plane = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ok, reason, _ = check(PodPolicy(), tolerations=[{**control_plane, "operator": "Exists"}])
    assert (ok, reason) == (False, "TolerationNotAllowed")
    # Tolerating everything (no key, Exists) is its own toleration, allowed only if listed.
    spot = Toleration(key="spot", value="true", effect="NoSchedule")
    policy = PodPolicy(allowed_tolerations=(spot,))
    assert check(policy, tolerations=[{"key": "spot", "value": "true", "effect": "NoSchedule"}])[0]
    assert not check(policy, tolerations=[{"operator": "Exists"}])[0]


def test_secrets_must_opt_in() -> None:
    policy = PodPolicy()
    labelled = {"metadata": {"labels": {admission.LABEL_USABLE: "true"}}, "type": "Opaque"}
    ssh_auth = {"metadata": {}, "type": admission.SSH_AUTH_TYPE}
    plain = {"metadata": {"labels": {"app": "db"}}, "type": "Opaque"}
    assert admission.secret_usable(labelled, private_key=False, policy=policy)
    assert admission.secret_usable(ssh_auth, private_key=True, policy=policy)
    # The ssh-auth type vouches for a private key only, not for a known_hosts file.
    assert not admission.secret_usable(ssh_auth, private_key=False, policy=policy)
    assert not admission.secret_usable(plain, private_key=True, policy=policy)
    strict = PodPolicy(trust_ssh_auth_secrets=False)
    assert not admission.secret_usable(ssh_auth, private_key=True, policy=strict)
    message = admission.not_usable_message("credentials", "db", True, strict)
    assert "label it ec2-terminal.io/usable-by-sessions=true" in message
    assert "ssh-auth" not in message


def test_the_ec2_instance_connect_pod_mounts_no_key_secret() -> None:
    """A credentialsSecretRef beside EC2InstanceConnect is neither checked nor mounted."""
    raw = body(
        target={
            "instanceId": "i-0123456789abcdef0",
            "region": "eu-west-1",
            "accessMethod": "EC2InstanceConnect",
        },
        credentialsSecretRef={"name": "someone-elses-secret"},
        hostKey={"policy": "ConsoleOutput"},
    )
    s = parse_session(raw)
    assert resources.mounted_key(s) is None
    pod = resources.build_pod(s, OperatorConfig())
    secrets = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert secrets == {"demo-token"}


def test_policy_comes_from_the_environment() -> None:
    cfg = OperatorConfig.from_env(
        {
            "EC2_TERMINAL_OPERATOR_ALLOWED_IMAGES": "a.example/x:*, b.example/y:1",
            "EC2_TERMINAL_OPERATOR_ALLOWED_NODE_SELECTORS": '{"pool": ["terminals"]}',
            "EC2_TERMINAL_OPERATOR_ALLOWED_TOLERATIONS": '[{"key":"spot","effect":"NoSchedule"}]',
            "EC2_TERMINAL_OPERATOR_TRUST_SSH_AUTH_SECRETS": "false",
        }
    )
    assert cfg.pod_policy.allowed_images == ("a.example/x:*", "b.example/y:1")
    assert cfg.pod_policy.allowed_node_selectors == {"pool": ("terminals",)}
    assert cfg.pod_policy.allowed_tolerations == (Toleration(key="spot", effect="NoSchedule"),)
    assert cfg.pod_policy.trust_ssh_auth_secrets is False
    assert OperatorConfig.from_env({}).pod_policy == PodPolicy()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALLOWED_IMAGES", "a.example/x*", "ALLOWED_IMAGES: allowed image 'a.example/x\\*'"),
        ("ALLOWED_NODE_SELECTORS", "{pool: x}", "ALLOWED_NODE_SELECTORS: .* not valid JSON"),
        ("ALLOWED_NODE_SELECTORS", '{"pool": "x"}', "values must be a list of strings"),
        ("ALLOWED_TOLERATIONS", '[{"key": "a", "tolerate": 1}]', "unknown fields"),
        ("ALLOWED_TOLERATIONS", '{"key": "a"}', "must be a list of objects"),
        ("TRUST_SSH_AUTH_SECRETS", "yes", "must be a boolean \\(true or false\\), not 'yes'"),
    ],
)
def test_a_malformed_policy_is_refused_with_the_variables_name(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        OperatorConfig.from_env({f"EC2_TERMINAL_OPERATOR_{name}": value})
    assert f"EC2_TERMINAL_OPERATOR_{name}" in str(info.value)
