"""The plan for one SSH connection (address, identity, trust), and a host target's plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from app.errors import ConfigurationError
from app.settings import HostKeyPolicy, Target
from app.ssh.hostkeys import FingerprintVerifier, HostKeyVerifier, KnownHostsVerifier
from app.ssh.keys import load_key


@dataclass(frozen=True)
class ConnectPlan:
    """Everything one connection attempt needs."""

    host: str
    port: int
    user: str
    client_keys: list[asyncssh.SSHKey] = field(repr=False)
    verifier: HostKeyVerifier
    # Instance Connect keys race their push: a refused login is worth one fresh attempt.
    retry_auth_once: bool = False

    @property
    def label(self) -> str:
        """user@host:port, for logs and status."""
        return f"{self.user}@{self.host}:{self.port}"


def verifier_for(target: Target) -> HostKeyVerifier:
    """The host key verifier for policies that need nothing from AWS."""
    policy = target.host_key_policy
    if policy is HostKeyPolicy.FINGERPRINT:
        assert target.host_key_fingerprint is not None
        return FingerprintVerifier(frozenset({target.host_key_fingerprint}))
    if policy in (HostKeyPolicy.KNOWN_HOSTS, HostKeyPolicy.ACCEPT_NEW):
        path = target.known_hosts or Path.home() / ".ssh" / "known_hosts"
        return KnownHostsVerifier(path, accept_new=policy is HostKeyPolicy.ACCEPT_NEW)
    raise ConfigurationError(f"host key policy {policy} needs an EC2 instance id")


def host_plan(target: Target) -> ConnectPlan:
    """The plan for a target given by host name: its key file and a verifier from settings."""
    if target.host is None:
        raise ConfigurationError("no target host configured")
    if target.key_file is None:
        raise ConfigurationError("no SSH key configured: set --key-file")
    return ConnectPlan(
        host=target.host,
        port=target.port,
        user=target.user,
        client_keys=[load_key(target.key_file)],
        verifier=verifier_for(target),
    )
