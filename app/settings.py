"""The server's configuration: one frozen object, built once by the command line and passed down."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from app.errors import ConfigurationError

# An instance id's shape: EC2 issues "i-" then 8 (older) or 17 lowercase hex digits; lengths
# between pass here, and AWS's own refusal (InstanceIdMalformed) names the problem.
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
# An --allowed-hosts entry: a lower-case DNS name, optionally "*." and a domain under it.
HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
# An Instance Connect key is valid on the instance for this long after the push.
INSTANCE_CONNECT_KEY_LIFETIME = 60.0
# The login after a push must end well inside the key's lifetime: the clock starts when AWS
# accepts the key, before the push returns, so a timeout near 60 s would fail as a refused
# login instead of a timeout.
INSTANCE_CONNECT_MAX_CONNECT_TIMEOUT = 45.0
# The smallest recording size limit: a header, some output and the events that end it.
MIN_RECORDING_BYTES = 4096


class AccessMethod(StrEnum):
    """How the server authenticates to the target."""

    SSH_KEY = "ssh-key"
    INSTANCE_CONNECT = "instance-connect"


class HostKeyPolicy(StrEnum):
    """How the server decides that the target's host key is genuine."""

    KNOWN_HOSTS = "known-hosts"
    FINGERPRINT = "fingerprint"
    CONSOLE_OUTPUT = "console-output"
    ACCEPT_NEW = "accept-new"


class LogLevel(StrEnum):
    """How much the server logs (never credentials or terminal bytes, at any level)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class AddressKind(StrEnum):
    """Which of an EC2 instance's addresses to connect to."""

    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in."""

    host: str | None = None
    port: int = 22
    user: str = "ec2-user"
    instance_id: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    address: AddressKind = AddressKind.PUBLIC
    access_method: AccessMethod = AccessMethod.SSH_KEY
    key_file: Path | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.KNOWN_HOSTS
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None


@dataclass(frozen=True)
class Limits:
    """Timeouts and bounds; every duration is in seconds."""

    connect_timeout: float = 15.0
    hello_timeout: float = 10.0
    idle_timeout: float = 1800.0
    max_duration: float = 28800.0
    resume_grace: float = 60.0
    max_sessions: int = 32
    flow_window: int = 1024 * 1024
    replay_buffer: int = 1024 * 1024
    input_rate: int = 256 * 1024
    keepalive_interval: float = 15.0
    max_connections: int = 256
    header_timeout: float = 10.0
    # Read-only viewers per session; 0 turns sharing off.
    max_viewers: int = 8
    # The largest file an upload may write and a download may send; 0 turns that way off.
    max_upload_bytes: int = 1024**3
    max_download_bytes: int = 1024**3
    # A recording file never grows beyond this; it then ends with a marker.
    max_recording_bytes: int = 64 * 1024 * 1024
    # The WebSocket layer's keepalive: a ping every interval, the socket cut when its pong has
    # not come within the timeout (a client that stopped reading, a dead network path).
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0


@dataclass(frozen=True)
class Settings:
    """Everything `ec2-terminal serve` needs."""

    target: Target = field(default_factory=Target)
    limits: Limits = field(default_factory=Limits)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8000
    base_path: str = "/"
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    token_check_interval: float = 5.0
    link_ttl: float = 300.0
    login_ttl: float = 28800.0
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    # Proxies whose X-Forwarded-Proto/For are believed: addresses, networks, or "*".
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    recordings_dir: Path | None = None
    # Whether the page lets remote programs set the clipboard (OSC 52); never read it.
    clipboard_osc52: bool = False
    log_level: LogLevel = LogLevel.INFO
    # Set by the operator on session pods: who the pod is, and the Lease it reports activity on
    # (holder: the pod's uid, so the operator ignores what an earlier pod of the session left).
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None
    activity_lease: str | None = None
    activity_interval: float = 10.0
    # The mounted ServiceAccount (token, ca.crt); None: where Kubernetes mounts it.
    service_account_dir: Path | None = None

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigurationError("; ".join(problems))

    def _problems(self) -> list[str]:
        out: list[str] = []
        if not (self.base_path.startswith("/") and self.base_path.endswith("/")):
            out.append(f"base path {self.base_path!r} must start and end with '/'")
        out += [
            f"allowed host {h!r} must be a host name without scheme or port, or *.domain"
            for h in self.allowed_hosts
            if not HOST_PATTERN.fullmatch(h)
        ]
        t, lim = self.target, self.limits
        if not 1 <= t.port <= 65535:
            out.append(f"target port {t.port} is out of range")
        if lim.replay_buffer < lim.flow_window:
            out.append("the replay buffer must be at least as large as the flow-control window")
        if lim.max_sessions < 1:
            out.append("max sessions must be at least 1")
        if lim.max_viewers < 0:
            out.append("max viewers must be 0 (sharing off) or more")
        for name in ("max_upload_bytes", "max_download_bytes"):
            if getattr(lim, name) < 0:
                out.append(f"--{name.replace('_', '-')} must be 0 (transfers off) or more")
        out += [
            f"forwarded-allow-ips entry {ip!r} must be an IP address, a network such as "
            "10.0.0.0/8, or *"
            for ip in self.forwarded_allow_ips
            if not _is_ip_or_network(ip)
        ]
        for name in ("token_check_interval", "link_ttl", "login_ttl", "activity_interval"):
            if getattr(self, name) <= 0:
                out.append(f"--{name.replace('_', '-')} must be positive")
        if lim.max_connections < 1:
            out.append("max connections must be at least 1")
        if lim.header_timeout <= 0:
            out.append("the header timeout must be positive")
        if lim.max_recording_bytes < MIN_RECORDING_BYTES:
            out.append(f"--max-recording-bytes must be at least {MIN_RECORDING_BYTES}")
        for name in ("ws_ping_interval", "ws_ping_timeout"):
            if getattr(lim, name) <= 0:
                out.append(f"--{name.replace('_', '-')} must be positive")
        if t.host_key_policy is HostKeyPolicy.FINGERPRINT and not t.host_key_fingerprint:
            out.append("host key policy 'fingerprint' needs --host-key-fingerprint")
        if t.host_key_fingerprint and not t.host_key_fingerprint.startswith("SHA256:"):
            out.append("the host key fingerprint must look like 'SHA256:...'")
        out += _ec2_problems(t, lim)
        return out

    @property
    def ready_problem(self) -> str | None:
        """Why the server cannot serve sessions yet, from the configuration alone, or None."""
        # AWS credentials and region need I/O, so the server adds them for instance targets
        # (app.ec2.readiness.AwsReadiness: once at startup, then at most once per TTL).
        t = self.target
        if not self.token and self.token_file is None:
            return "no access token configured: set --token-file or EC2_TERMINAL_TOKEN"
        if not t.host and not t.instance_id:
            return "no target: set --host or --instance-id"
        if t.access_method is AccessMethod.SSH_KEY and t.key_file is None:
            return "no SSH key configured: set --key-file"
        if t.key_file is not None and not t.key_file.is_file():
            return f"SSH key file {t.key_file} is missing"
        if t.host_key_policy is HostKeyPolicy.KNOWN_HOSTS:
            known = t.known_hosts or Path.home() / ".ssh" / "known_hosts"
            if not known.is_file():
                return f"known hosts file {known} is missing"
        return None


def _is_ip_or_network(entry: str) -> bool:
    """Whether uvicorn can match a client address against `entry` (host names never match)."""
    if entry == "*":
        return True
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _ec2_problems(t: Target, lim: Limits) -> list[str]:
    """What is wrong with the EC2 side of a target, each with the flag to fix."""
    out: list[str] = []
    if t.host and t.instance_id:
        out.append(
            f"set --host or --instance-id, not both (got --host {t.host!r} and "
            f"--instance-id {t.instance_id!r})"
        )
    if t.instance_id is not None and not INSTANCE_ID.fullmatch(t.instance_id):
        out.append(
            f"instance id {t.instance_id!r} is malformed: it must look like "
            "i-0123456789abcdef0 ('i-' then 8 to 17 lowercase hex digits)"
        )
    if t.instance_id is None:
        if t.host_key_policy is HostKeyPolicy.CONSOLE_OUTPUT:
            out.append(
                "host key policy 'console-output' needs --instance-id: the host keys are read "
                "from that instance's console output"
            )
        if t.access_method is AccessMethod.INSTANCE_CONNECT:
            out.append(
                "access method 'instance-connect' needs --instance-id: keys are pushed to "
                "that instance"
            )
    if (
        t.access_method is AccessMethod.INSTANCE_CONNECT
        and lim.connect_timeout > INSTANCE_CONNECT_MAX_CONNECT_TIMEOUT
    ):
        out.append(
            f"--connect-timeout {lim.connect_timeout:g} is too long for "
            f"--access-method instance-connect: a pushed key is valid for "
            f"{INSTANCE_CONNECT_KEY_LIFETIME:g} s, so the login must finish within "
            f"{INSTANCE_CONNECT_MAX_CONNECT_TIMEOUT:g} s"
        )
    return out
