"""Startup validation of EC2 targets: refused before the server listens, with the flag to fix."""

from __future__ import annotations

from typing import Any

import pytest

from app.cli.main import build_parser
from app.cli.serve import settings_from_args
from app.errors import ConfigurationError
from app.settings import (
    INSTANCE_CONNECT_MAX_CONNECT_TIMEOUT,
    AccessMethod,
    HostKeyPolicy,
    Limits,
    Settings,
    Target,
)

INSTANCE = "i-0123456789abcdef0"
FINGERPRINT = "SHA256:" + "A" * 43


def settings(connect_timeout: float = 15.0, **target: Any) -> Settings:
    return Settings(target=Target(**target), limits=Limits(connect_timeout=connect_timeout))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"host": "example.com", "host_key_policy": HostKeyPolicy.CONSOLE_OUTPUT},
            "host key policy 'console-output' needs --instance-id",
        ),
        (
            {"host": "example.com", "access_method": AccessMethod.INSTANCE_CONNECT},
            "access method 'instance-connect' needs --instance-id",
        ),
        (
            {"host": "example.com", "instance_id": INSTANCE},
            "set --host or --instance-id, not both",
        ),
        ({"instance_id": "i-xyz"}, "instance id 'i-xyz' is malformed"),
        ({"instance_id": "i-0123456"}, "is malformed"),  # 7 digits
        ({"instance_id": "i-0123456789ABCDEF0"}, "is malformed"),  # upper case
        ({"instance_id": "i-0123456789abcdef01"}, "is malformed"),  # 18 digits
        ({"instance_id": " i-0123456789abcdef0"}, "is malformed"),
        ({"instance_id": "0123456789abcdef0"}, "is malformed"),
    ],
)
def test_inconsistent_ec2_targets_are_refused(target: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings(**target)


@pytest.mark.parametrize("instance_id", ["i-01234567", INSTANCE])
def test_well_formed_instance_ids_are_accepted(instance_id: str) -> None:
    assert settings(instance_id=instance_id).target.instance_id == instance_id


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(
            host="example.com",
            access_method=AccessMethod.INSTANCE_CONNECT,
            host_key_policy=HostKeyPolicy.CONSOLE_OUTPUT,
        )
    assert "'console-output' needs --instance-id" in str(caught.value)
    assert "'instance-connect' needs --instance-id" in str(caught.value)


def test_instance_connect_caps_the_connect_timeout() -> None:
    """A pushed key lives 60 s: a login that may take longer would fail as a refused login."""
    limit = INSTANCE_CONNECT_MAX_CONNECT_TIMEOUT
    assert limit < 60
    ok = settings(limit, instance_id=INSTANCE, access_method=AccessMethod.INSTANCE_CONNECT)
    assert ok.limits.connect_timeout == limit
    with pytest.raises(ConfigurationError, match=r"--connect-timeout 60 is too long .* 60 s"):
        settings(60, instance_id=INSTANCE, access_method=AccessMethod.INSTANCE_CONNECT)
    with pytest.raises(ConfigurationError, match="within 45 s"):
        settings(limit + 0.5, instance_id=INSTANCE, access_method=AccessMethod.INSTANCE_CONNECT)
    # A key file has no such clock.
    assert settings(120, instance_id=INSTANCE).limits.connect_timeout == 120


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "example.com", "--host-key-policy", "console-output"], "needs --instance-id"),
        (["--host", "example.com", "--instance-id", INSTANCE], "not both"),
        (["--instance-id", "i-XYZ"], "instance id 'i-XYZ' is malformed"),
        (
            [
                *("--instance-id", INSTANCE),
                *("--access-method", "instance-connect"),
                *("--connect-timeout", "90"),
            ],
            "--connect-timeout 90 is too long",
        ),
    ],
)
def test_the_command_line_refuses_them(
    flags: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` builds its settings before it listens; main turns this error into exit status 2."""
    for name in ("AWS_HOSTNAME", "EC2_TERMINAL_HOST", "EC2_TERMINAL_INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)
    fingerprint = ["--host-key-policy", "fingerprint", "--host-key-fingerprint", FINGERPRINT]
    if "--host-key-policy" in flags:
        fingerprint = []
    args = build_parser().parse_args(["serve", *fingerprint, *flags])
    with pytest.raises(ConfigurationError, match=message):
        settings_from_args(args)
