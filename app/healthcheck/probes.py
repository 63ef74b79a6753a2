"""The probes of one check: the SSH banner, the session server's /readyz, the EC2 instance."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from app.ec2.errors import InstanceNotFound, InstanceNotRunning, aws_error, state_advice
from app.ec2.instances import resolve_instance
from app.errors import TerminalError
from app.healthcheck.results import CheckResult, Outcome
from app.settings import AddressKind

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)

# RFC 4253 4.2: the identification line is at most 255 bytes; servers may send other lines first.
MAX_BANNER_LINE = 255
MAX_PRE_BANNER_LINES = 20
_NO_ROUTE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


def _printable(raw: bytes, limit: int = 60) -> str:
    text = raw.decode("ascii", "replace").strip()
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


async def _read_banner(reader: asyncio.StreamReader) -> bytes | None:
    """The SSH identification line, or None if the peer closed or sent something else."""
    for _ in range(MAX_PRE_BANNER_LINES):
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial if exc.partial.startswith(b"SSH-") else None
        except asyncio.LimitOverrunError:
            return None
        if line.startswith(b"SSH-"):
            return line.rstrip(b"\r\n")
        if line.startswith((b"HTTP/", b"<")):
            return line.rstrip(b"\r\n")  # a web server: not SSH, no need to wait
    return None


async def ssh_banner(
    host: str, port: int, connect_timeout: float, banner_timeout: float
) -> Outcome:
    """Connects to host:port and waits for the SSH banner; never sends a byte, never logs in."""
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), connect_timeout
        )
    except socket.gaierror as exc:
        return Outcome(
            CheckResult.DNS,
            f"the name {host!r} cannot be resolved ({exc.strerror}): check the target's host "
            "name and the worker's DNS",
        )
    except TimeoutError:
        return Outcome(
            CheckResult.DNS,
            f"resolving {host!r} took longer than {connect_timeout:g} s: the DNS server does "
            "not answer",
        )
    family, _, _, _, address = infos[0]
    ip = str(address[0])
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port, family=family, limit=MAX_BANNER_LINE + 2),
            connect_timeout,
        )
    except TimeoutError:
        return Outcome(
            CheckResult.UNREACHABLE,
            f"no answer from {where} within {connect_timeout:g} s: the machine is down, or a "
            "firewall or security group drops the traffic",
        )
    except ConnectionRefusedError:
        return Outcome(
            CheckResult.UNREACHABLE,
            f"{where} refused the connection: nothing listens on port {port} (is sshd running?)",
        )
    except OSError as exc:
        if exc.errno in _NO_ROUTE:
            return Outcome(
                CheckResult.UNREACHABLE,
                f"no route to {where} ({exc.strerror}): check the subnet's routes and that the "
                "machine is up",
            )
        return Outcome(CheckResult.UNREACHABLE, f"cannot connect to {where}: {exc.strerror or exc}")
    try:
        try:
            banner = await asyncio.wait_for(_read_banner(reader), banner_timeout)
        except TimeoutError:
            return Outcome(
                CheckResult.BANNER_TIMEOUT,
                f"{where} accepted the connection but sent no SSH banner within "
                f"{banner_timeout:g} s: the SSH server is overloaded or hung, or something "
                "else listens there",
            )
        except OSError as exc:
            return Outcome(
                CheckResult.UNREACHABLE,
                f"{where} reset the connection before its SSH banner ({exc.strerror or exc})",
            )
        latency = (time.perf_counter() - started) * 1000
        if banner is None:
            return Outcome(
                CheckResult.BANNER_TIMEOUT,
                f"{where} accepted the connection and closed it without an SSH banner: sshd "
                "refuses this client (MaxStartups, TCP wrappers) or something else listens there",
            )
        if not banner.startswith(b"SSH-"):
            return Outcome(
                CheckResult.BANNER_TIMEOUT,
                f"{where} answered, but not with an SSH banner (got {_printable(banner)!r}): "
                "something other than SSH listens on that port",
            )
        return Outcome(
            CheckResult.OK,
            f"SSH on {where} answered in {latency:.1f} ms ({_printable(banner)})",
            latency,
        )
    finally:
        writer.close()
        # A peer that never reads cannot hold the check: closing is best effort.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def readyz(client: httpx.AsyncClient, base_url: str, service: str) -> Outcome:
    """The session server's own readiness, asked through the session's Service."""
    url = f"{base_url}/readyz"
    try:
        response = await client.get(url)
    except httpx.TimeoutException:
        return Outcome(
            CheckResult.POD_NOT_READY,
            f"the session server behind Service {service} did not answer {url} in time",
        )
    except httpx.HTTPError as exc:
        return Outcome(
            CheckResult.POD_NOT_READY,
            f"cannot reach the session server through Service {service} ({url}): {exc}",
        )
    if response.status_code == 200:
        return Outcome(CheckResult.OK, "")
    reason = response.text.strip()[:200] or response.reason_phrase
    return Outcome(
        CheckResult.POD_NOT_READY,
        f"the session server is not ready (HTTP {response.status_code} from {url}): {reason}",
    )


def _status_of(ec2: EC2Client, instance_id: str) -> dict[str, Any] | None:
    response = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)
    for status in response.get("InstanceStatuses", []):
        if status.get("InstanceId") == instance_id:
            return dict(status)
    return None


def _impaired(status: dict[str, Any]) -> list[str]:
    """The status checks AWS reports as impaired, by name."""
    checks = {"system": "SystemStatus", "instance": "InstanceStatus", "EBS": "AttachedEbsStatus"}
    return [
        name for name, key in checks.items() if (status.get(key) or {}).get("Status") == "impaired"
    ]


async def instance_state(ec2: EC2Client, instance_id: str) -> Outcome:
    """DescribeInstanceStatus: instance-stopped, instance-impaired, or ok (running, checks fine)."""
    region = ec2.meta.region_name
    try:
        status = await asyncio.to_thread(_status_of, ec2, instance_id)
    except (ClientError, BotoCoreError) as exc:
        error = aws_error(exc, "ec2:DescribeInstanceStatus", instance_id, region)
        if isinstance(error, InstanceNotFound):
            return Outcome(CheckResult.INSTANCE_STOPPED, str(error))
        return Outcome(
            CheckResult.UNREACHABLE, f"the worker could not look the instance up: {error}"
        )
    if status is None:
        return Outcome(
            CheckResult.INSTANCE_STOPPED,
            f"instance {instance_id} does not exist in region {region} (terminated long ago?)",
        )
    state = str((status.get("InstanceState") or {}).get("Name", "unknown"))
    if state != "running":
        return Outcome(
            CheckResult.INSTANCE_STOPPED,
            f"instance {instance_id} is {state}, not running; {state_advice(state)}",
        )
    impaired = _impaired(status)
    if impaired:
        return Outcome(
            CheckResult.INSTANCE_IMPAIRED,
            f"instance {instance_id} is running but AWS reports its {' and '.join(impaired)} "
            "status check impaired: see the instance's status checks in the EC2 console; a "
            "reboot or stop and start usually helps",
        )
    return Outcome(CheckResult.OK, "")


async def instance_address(
    ec2: EC2Client, instance_id: str, address: AddressKind
) -> tuple[str | None, Outcome | None]:
    """The address to probe, or the outcome that explains why there is none."""
    try:
        resolved = await resolve_instance(ec2, instance_id, address)
    except InstanceNotRunning as exc:
        return None, Outcome(CheckResult.INSTANCE_STOPPED, exc.message)
    except TerminalError as exc:
        return None, Outcome(CheckResult.UNREACHABLE, exc.message)
    return resolved.address, None
