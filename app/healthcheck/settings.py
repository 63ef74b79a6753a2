"""The health-check worker's configuration: one frozen object read from EC2_TERMINAL_* variables."""

from __future__ import annotations

import dataclasses
import os
import string
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from app.errors import ConfigurationError
from app.settings import AddressKind

ENV_PREFIX = "EC2_TERMINAL_"
DEFAULT_SESSION_ENDPOINT = "http://{service}.{namespace}.svc:{port}"
# {cluster_ip} is the Service's ClusterIP: for workers that reach Services but lack the cluster
# DNS (host-network pods, a node's own processes), and it spares a lookup per check.
ENDPOINT_FIELDS = ("service", "namespace", "name", "port", "cluster_ip")


def _env(name: str, convert: Callable[[str], Any] = str) -> dict[str, Any]:
    """Field metadata: the variable (after EC2_TERMINAL_) and how to parse it."""
    return {"env": name, "convert": convert}


def _optional_path(raw: str) -> Path:
    return Path(raw)


@dataclasses.dataclass(frozen=True)
class HealthCheckSettings:
    """Everything the worker, the beat schedule and `ec2-terminal health-check` need."""

    redis_url: str = dataclasses.field(
        default="redis://127.0.0.1:6379/0", metadata=_env("REDIS_URL")
    )
    # From EC2_TERMINAL_REDIS_PASSWORD or the file EC2_TERMINAL_REDIS_PASSWORD_FILE names.
    redis_password: str | None = dataclasses.field(
        default=None, repr=False, metadata=_env("REDIS_PASSWORD")
    )
    queue: str = dataclasses.field(default="ec2-terminal-health", metadata=_env("HEALTH_QUEUE"))
    # Probe timeouts, in seconds: TCP connect, then the SSH banner, /readyz, the AWS calls.
    connect_timeout: float = dataclasses.field(
        default=5.0, metadata=_env("HEALTH_CONNECT_TIMEOUT", float)
    )
    banner_timeout: float = dataclasses.field(
        default=5.0, metadata=_env("HEALTH_BANNER_TIMEOUT", float)
    )
    http_timeout: float = dataclasses.field(
        default=5.0, metadata=_env("HEALTH_HTTP_TIMEOUT", float)
    )
    aws_timeout: float = dataclasses.field(default=10.0, metadata=_env("HEALTH_AWS_TIMEOUT", float))
    # Celery's limits for one check: the soft one raises inside the task, the hard one kills it.
    soft_time_limit: float = dataclasses.field(
        default=45.0, metadata=_env("HEALTH_SOFT_TIME_LIMIT", float)
    )
    time_limit: float = dataclasses.field(default=60.0, metadata=_env("HEALTH_TIME_LIMIT", float))
    # A message taken but not acknowledged within this time goes back to the queue: it must
    # outlast the longest check and the longest retry delay, or a check would run twice.
    visibility_timeout: float = dataclasses.field(
        default=300.0, metadata=_env("HEALTH_VISIBILITY_TIMEOUT", float)
    )
    # A queued check older than this is dropped (the next schedule enqueues a fresh one).
    check_expires: float = dataclasses.field(
        default=300.0, metadata=_env("HEALTH_CHECK_EXPIRES", float)
    )
    max_retries: int = dataclasses.field(default=5, metadata=_env("HEALTH_MAX_RETRIES", int))
    retry_backoff_max: float = dataclasses.field(
        default=60.0, metadata=_env("HEALTH_RETRY_BACKOFF_MAX", float)
    )
    # Where a session's server answers, from its Service; tests and out-of-cluster workers
    # point this elsewhere (fields: {service}, {namespace}, {name}, {port}, {cluster_ip}).
    session_endpoint: str = dataclasses.field(
        default=DEFAULT_SESSION_ENDPOINT, metadata=_env("HEALTH_SESSION_ENDPOINT")
    )
    # Which address of an instance target to probe (the session pods use the same default).
    address: AddressKind = dataclasses.field(
        default=AddressKind.PUBLIC, metadata=_env("ADDRESS", AddressKind)
    )
    aws_endpoint_url: str | None = dataclasses.field(default=None, metadata=_env("ENDPOINT_URL"))
    # Worker processes, each running one check at a time.
    concurrency: int = dataclasses.field(default=4, metadata=_env("WORKER_CONCURRENCY", int))
    # /healthz, /readyz and /metrics of the worker.
    listen_host: str = dataclasses.field(default="127.0.0.1", metadata=_env("WORKER_LISTEN_HOST"))
    listen_port: int = dataclasses.field(default=9808, metadata=_env("WORKER_LISTEN_PORT", int))
    # Without Kubernetes: the beat schedule checks this session server and its target.
    server_url: str | None = dataclasses.field(default=None, metadata=_env("SERVER_URL"))
    beat_interval: float = dataclasses.field(default=60.0, metadata=_env("HEALTH_INTERVAL", float))
    beat_schedule_file: Path = dataclasses.field(
        default=Path(tempfile.gettempdir()) / "ec2-terminal-beat-schedule",
        metadata=_env("BEAT_SCHEDULE_FILE", _optional_path),
    )
    # The beat schedule's target: the same variables `ec2-terminal serve` reads.
    target_host: str | None = dataclasses.field(default=None, metadata=_env("HOST"))
    target_port: int = dataclasses.field(default=22, metadata=_env("PORT", int))
    instance_id: str | None = dataclasses.field(default=None, metadata=_env("INSTANCE_ID"))
    region: str | None = dataclasses.field(default=None, metadata=_env("REGION"))

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigurationError("; ".join(problems))

    def _problems(self) -> list[str]:
        out: list[str] = []
        if urlsplit(self.redis_url).scheme not in ("redis", "rediss"):
            out.append(
                "EC2_TERMINAL_REDIS_URL must be a redis:// or rediss:// URL, not "
                f"{self.redacted_redis_url!r}"
            )
        for name in ("connect_timeout", "banner_timeout", "http_timeout", "aws_timeout"):
            if getattr(self, name) <= 0:
                out.append(f"{name.replace('_', ' ')} must be positive")
        probes = self.connect_timeout + self.banner_timeout + self.aws_timeout
        if self.soft_time_limit <= probes:
            out.append(
                f"the soft time limit ({self.soft_time_limit:g} s) must exceed the probe timeouts "
                f"together (connect + banner + AWS = {probes:g} s)"
            )
        if self.time_limit <= self.soft_time_limit:
            out.append("the time limit must exceed the soft time limit")
        if self.visibility_timeout <= self.time_limit + self.retry_backoff_max:
            out.append(
                f"the visibility timeout ({self.visibility_timeout:g} s) must exceed the time "
                f"limit plus the longest retry delay ({self.time_limit + self.retry_backoff_max:g}"
                " s), or a check still running would be handed to a second worker"
            )
        if self.concurrency < 1:
            out.append("worker concurrency must be at least 1")
        try:
            self.session_endpoint.format(**dict.fromkeys(ENDPOINT_FIELDS, "x"))
        except (KeyError, IndexError, ValueError) as exc:
            out.append(
                f"EC2_TERMINAL_HEALTH_SESSION_ENDPOINT {self.session_endpoint!r} is not a valid "
                f"template ({exc!r}); it may use {{service}}, {{namespace}}, {{name}}, {{port}} "
                "and {cluster_ip}"
            )
        return out

    @property
    def lock_ttl(self) -> float:
        """How long a check's lock lives: past the hard limit, so a killed check frees it."""
        return self.time_limit + 5.0

    @property
    def broker_url(self) -> str:
        """The Redis URL with the password in it, for Celery and redis-py (never logged)."""
        if not self.redis_password:
            return self.redis_url
        parts = urlsplit(self.redis_url)
        user = quote(parts.username or "", safe="")
        host = parts.hostname or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:{quote(self.redis_password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def redacted_redis_url(self) -> str:
        """The Redis URL for messages: any password in it replaced."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        netloc = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, f"***@{netloc}", parts.path, parts.query, ""))

    @property
    def endpoint_needs_cluster_ip(self) -> bool:
        """Whether the session endpoint names the Service's ClusterIP."""
        fields = {field for _, field, _, _ in string.Formatter().parse(self.session_endpoint)}
        return "cluster_ip" in fields

    def endpoint(
        self, namespace: str, name: str, service: str, port: int, cluster_ip: str = ""
    ) -> str:
        """The base URL of a session's server, from its Service."""
        return self.session_endpoint.format(
            namespace=namespace, name=name, service=service, port=port, cluster_ip=cluster_ip
        ).rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HealthCheckSettings:
        """Reads EC2_TERMINAL_* over the defaults; a bad value is a ConfigurationError."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.metadata["env"]
            raw = env.get(name, "")
            if raw == "":
                continue
            try:
                values[f.name] = f.metadata["convert"](raw)
            except ValueError:
                shown = "(hidden)" if not f.repr else repr(raw)
                raise ConfigurationError(f"{name} has a bad value {shown}") from None
        password_file = env.get(ENV_PREFIX + "REDIS_PASSWORD_FILE", "")
        if password_file and "redis_password" not in values:
            try:
                values["redis_password"] = Path(password_file).read_text().strip() or None
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read the Redis password file {password_file}: {exc.strerror}"
                ) from None
        return cls(**values)
