"""Health-check pieces without a cluster: results, settings, probes against real sockets, sshd,
the session server and moto, the Redis lock, the shared metrics, and the enqueue command's
refusal when Redis is away."""

from __future__ import annotations

import asyncio
import datetime
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.ec2.models.instances import Instance
from prometheus_client import generate_latest

from app.ec2.clients import AwsClientCache
from app.errors import ConfigurationError
from app.healthcheck import probes
from app.healthcheck.check import probe_target
from app.healthcheck.lock import SessionLocks
from app.healthcheck.metrics import SharedCheckStats, registry_for
from app.healthcheck.results import CheckResult, HealthRecord, Outcome, verdict
from app.healthcheck.settings import HealthCheckSettings
from tests.fixtures_healthcheck import RedisServer, fake_target, run_command
from tests.fixtures_moto import MotoAws
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import CLI, env_without_proxies, free_port, poll

# --- results and settings ---


def test_verdict_explains_the_most_and_keeps_the_other_failures() -> None:
    ok = Outcome(CheckResult.OK, "SSH answered", 3.5)
    pod = Outcome(CheckResult.POD_NOT_READY, "pod down")
    refused = Outcome(CheckResult.UNREACHABLE, "refused")
    stopped = Outcome(CheckResult.INSTANCE_STOPPED, "stopped")
    assert verdict(ok, Outcome(CheckResult.OK, "")) == Outcome(CheckResult.OK, "SSH answered", 3.5)
    assert verdict(ok, pod) == pod
    assert verdict(refused, pod) == Outcome(CheckResult.UNREACHABLE, "refused; also: pod down")
    assert verdict(pod, refused, stopped).result is CheckResult.INSTANCE_STOPPED


def test_health_record_is_the_status_contract() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    record = HealthRecord(when, Outcome(CheckResult.OK, "fine", 12.345), "task-1")
    assert record.to_status() == {
        "time": "2026-01-02T03:04:05.678901Z",
        "result": "ok",
        "latencyMs": 12.3,
        "taskId": "task-1",
        "message": "fine",
        "traceId": None,
    }


def test_settings_from_env_read_the_password_file_and_never_show_it(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cr:et/@\n")
    s = HealthCheckSettings.from_env(
        {
            "EC2_TERMINAL_REDIS_URL": "redis://redis.ec2-terminal.svc:6380/2",
            "EC2_TERMINAL_REDIS_PASSWORD_FILE": str(secret),
            "EC2_TERMINAL_HEALTH_SESSION_ENDPOINT": "http://127.0.0.1:9/{namespace}",
            "EC2_TERMINAL_ADDRESS": "private",
        }
    )
    assert s.redis_password == "s3cr:et/@"
    assert s.broker_url == "redis://:s3cr%3Aet%2F%40@redis.ec2-terminal.svc:6380/2"
    assert "s3cr" not in repr(s)
    assert s.endpoint("ns", "n", "svc", 80) == "http://127.0.0.1:9/ns"
    inline = HealthCheckSettings(redis_url="redis://:hunter2@h:6379/0")
    assert inline.redacted_redis_url == "redis://***@h:6379/0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EC2_TERMINAL_HEALTH_TIME_LIMIT": "soon"}, "EC2_TERMINAL_HEALTH_TIME_LIMIT has a bad"),
        ({"EC2_TERMINAL_REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read the Redis"),
        ({"EC2_TERMINAL_REDIS_URL": "http://x"}, "must be a redis://"),
        ({"EC2_TERMINAL_HEALTH_VISIBILITY_TIMEOUT": "61"}, "visibility timeout (61 s) must"),
        ({"EC2_TERMINAL_HEALTH_SOFT_TIME_LIMIT": "5"}, "soft time limit (5 s) must exceed"),
        ({"EC2_TERMINAL_HEALTH_SESSION_ENDPOINT": "http://{pod}"}, "not a valid template"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        HealthCheckSettings.from_env(env)
    assert message in str(caught.value)


# --- the SSH banner probe against real sockets ---


@pytest.mark.anyio
async def test_banner_of_a_real_sshd_is_ok_with_latency(sshd: Sshd) -> None:
    outcome = await probes.ssh_banner(sshd.host, sshd.port, 2, 2)
    assert outcome.result is CheckResult.OK
    assert outcome.latency_ms is not None
    assert 0 < outcome.latency_ms < 2000
    assert "SSH-2.0-OpenSSH" in outcome.message
    # The probe never logs in: sshd saw the connection close before any authentication.
    await asyncio.to_thread(
        poll, lambda: "kex_exchange_identification" in sshd.log(), 5, "sshd log"
    )
    assert "Accepted" not in sshd.log()
    assert "Failed" not in sshd.log()


@pytest.mark.anyio
async def test_refused_port_is_unreachable() -> None:
    outcome = await probes.ssh_banner("127.0.0.1", free_port(), 2, 2)
    assert outcome.result is CheckResult.UNREACHABLE
    assert "refused the connection" in outcome.message


@pytest.mark.anyio
async def test_silent_port_is_a_banner_timeout_within_the_timeout() -> None:
    with fake_target(banner_delay=None) as target:
        started = time.monotonic()
        outcome = await probes.ssh_banner("127.0.0.1", target.port, 2, 1.0)
        elapsed = time.monotonic() - started
    assert outcome.result is CheckResult.BANNER_TIMEOUT
    assert "sent no SSH banner within 1 s" in outcome.message
    assert 1.0 <= elapsed < 2.0


class _Http(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(400)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def web_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http)

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.anyio
async def test_a_web_server_on_the_ssh_port_is_named(web_server: int) -> None:
    # HTTP servers wait for a request; a client that speaks first gets the answer.
    with socket.create_connection(("127.0.0.1", web_server)) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(12).startswith(b"HTTP/1.0 400")
    outcome = await probes.ssh_banner("127.0.0.1", web_server, 2, 1.0)
    assert outcome.result is CheckResult.BANNER_TIMEOUT


@pytest.mark.anyio
async def test_unknown_name_is_dns() -> None:
    outcome = await probes.ssh_banner("no-such-host.invalid", 22, 5, 1)
    assert outcome.result is CheckResult.DNS
    assert "'no-such-host.invalid' cannot be resolved" in outcome.message


# --- /readyz of a real session server ---


@pytest.mark.anyio
async def test_readyz_of_the_session_server(server_factory: ServerFactory, sshd: Sshd) -> None:
    ready = server_factory(sshd)
    unready = server_factory(sshd, key_file="/nonexistent/key")
    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
        assert (await probes.readyz(client, ready.origin, "demo")).result is CheckResult.OK
        outcome = await probes.readyz(client, unready.origin, "demo")
        assert outcome.result is CheckResult.POD_NOT_READY
        assert "HTTP 503" in outcome.message
        assert "/nonexistent/key" in outcome.message
        gone = await probes.readyz(client, f"http://127.0.0.1:{free_port()}", "demo")
        assert gone.result is CheckResult.POD_NOT_READY
        assert "cannot reach the session server through Service demo" in gone.message


# --- instances, against moto's server ---


def _settings(moto_aws: MotoAws) -> HealthCheckSettings:
    return HealthCheckSettings(aws_endpoint_url=moto_aws.endpoint_url, connect_timeout=2)


@pytest.mark.anyio
async def test_running_instance_is_probed_at_its_address(moto_aws: MotoAws, sshd: Sshd) -> None:
    instance = moto_aws.run_instance(public_ip=sshd.host)
    found = await probe_target(
        _settings(moto_aws), AwsClientCache(), None, instance, moto_aws.region, sshd.port
    )
    assert [o.result for o in found] == [CheckResult.OK]
    assert moto_aws.requests["DescribeInstances"] == 1


@pytest.mark.anyio
async def test_stopped_and_unknown_instances_are_instance_stopped(moto_aws: MotoAws) -> None:
    instance = moto_aws.run_instance()
    moto_aws.stop_instance(instance)
    found = await probe_target(
        _settings(moto_aws), AwsClientCache(), None, instance, moto_aws.region, 22
    )
    assert [o.result for o in found] == [CheckResult.INSTANCE_STOPPED]
    assert f"instance {instance} is stopped, not running; start it" in found[0].message
    missing = await probe_target(
        _settings(moto_aws), AwsClientCache(), None, "i-0123456789abcdef0", moto_aws.region, 22
    )
    assert [o.result for o in missing] == [CheckResult.INSTANCE_STOPPED]
    assert "i-0123456789abcdef0" in missing[0].message


@pytest.mark.anyio
async def test_impaired_instance_is_reported_even_when_ssh_answers(
    moto_aws: MotoAws, sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = moto_aws.run_instance(public_ip=sshd.host)
    # moto always reports "ok"; AWS reports an impaired system check this way.
    impaired = {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed"}]}
    monkeypatch.setattr(Instance, "system_status", property(lambda self: impaired))
    found = await probe_target(
        _settings(moto_aws), AwsClientCache(), None, instance, moto_aws.region, sshd.port
    )
    assert [o.result for o in found] == [CheckResult.INSTANCE_IMPAIRED, CheckResult.OK]
    assert verdict(*found).result is CheckResult.INSTANCE_IMPAIRED
    assert "system status check impaired" in found[0].message


# --- the lock, in a real Redis ---


def test_lock_is_one_holder_at_a_time_and_freed_by_ttl(redis_server: RedisServer) -> None:
    locks = SessionLocks(redis_server.client(), ttl_seconds=0.5)
    held = locks.acquire("ns", "a", "task-1")
    assert not isinstance(held, str)
    assert locks.acquire("ns", "a", "task-2") == "task-1"
    assert not isinstance(locks.acquire("ns", "b", "task-2"), str)  # another session
    # The same task again: its earlier run died holding the lock, so it takes it over.
    again = locks.acquire("ns", "a", "task-1")
    assert not isinstance(again, str)
    locks.release(held)  # no longer ours: must not free the new holder's lock
    assert locks.acquire("ns", "a", "task-3") == "task-1"
    time.sleep(0.6)
    assert not isinstance(locks.acquire("ns", "a", "task-3"), str)


# --- metrics shared by pool processes ---


def _record_in_child(stats: SharedCheckStats) -> None:
    stats.record("ok", 0.02)
    stats.record("skipped", None)


def test_metrics_from_forked_children_reach_the_main_process() -> None:
    stats = SharedCheckStats()
    child = multiprocessing.get_context("fork").Process(target=_record_in_child, args=(stats,))
    child.start()
    child.join(10)
    stats.record("unreachable", 2.0)
    text = generate_latest(registry_for(stats, lambda: 7)).decode()
    assert 'ec2_terminal_health_checks_total{result="ok"} 1.0' in text
    assert 'ec2_terminal_health_checks_total{result="skipped"} 1.0' in text
    assert 'ec2_terminal_health_check_seconds_bucket{le="0.025"} 1.0' in text
    assert 'ec2_terminal_health_check_seconds_bucket{le="2.5"} 2.0' in text
    assert "ec2_terminal_health_check_seconds_count 2.0" in text
    assert "ec2_terminal_health_check_queue_depth 7.0" in text

    def broken() -> int:
        raise OSError("redis is away")

    assert (
        "ec2_terminal_health_check_queue_depth NaN"
        in generate_latest(registry_for(stats, broken)).decode()
    )


# --- the enqueue command when Redis is away ---


def test_health_check_without_redis_fails_clearly(tmp_path: Path) -> None:
    env = env_without_proxies() | {
        "EC2_TERMINAL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "EC2_TERMINAL_REDIS_PASSWORD": "do-not-print-me",
        "KUBECONFIG": str(tmp_path / "none"),
    }
    started = time.monotonic()
    done = run_command([CLI, "health-check"], env)
    assert done.returncode == 1
    assert done.stderr.startswith("ec2-terminal health-check: cannot reach Redis at redis://127")
    assert "Traceback" not in done.stderr
    assert "do-not-print-me" not in done.stderr + done.stdout
    assert time.monotonic() - started < 30
