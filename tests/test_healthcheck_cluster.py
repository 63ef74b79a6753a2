"""Health checks end to end: the real control plane and operator, Debian's Redis, real Celery
worker processes, and each session pod's command run locally (kwok's pods cannot answer)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from app.healthcheck.celeryapp import TASK_CHECK_SESSION, create_celery
from app.healthcheck.settings import HealthCheckSettings
from tests.fixtures_healthcheck import (
    RedisServer,
    WorkerFactory,
    WorkerProcess,
    fake_target,
    overlapping,
    run_command,
    worker_env,
)
from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import (
    OperatorFactory,
    OperatorProcess,
    condition,
    get_session,
    materialize_volumes,
    pod_command_running,
    pod_environment,
    ready_session,
    wait_events,
)
from tests.fixtures_sshd import SSHD, Sshd
from tests.support import CLI, free_port, poll, port_open

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

QUEUE = "ec2-terminal-health"
# For targets that answer after 2 s: a banner timeout well beyond that, limits to match.
PATIENT = {
    "EC2_TERMINAL_HEALTH_BANNER_TIMEOUT": "5",
    "EC2_TERMINAL_HEALTH_SOFT_TIME_LIMIT": "12",
    "EC2_TERMINAL_HEALTH_TIME_LIMIT": "14",
    "EC2_TERMINAL_HEALTH_VISIBILITY_TIMEOUT": "20",
}


@contextlib.contextmanager
def session_pod(cluster: KubeCluster, namespace: str, name: str, tmp_path: Path) -> Iterator[int]:
    """Runs the session's Pod, as the operator rendered it, as a local process; yields its port."""
    pod = cluster.kubectl_json("get", "pod", name, namespace=namespace)
    secret_data: dict[str, dict[str, bytes]] = {}
    for volume in pod["spec"]["volumes"]:
        if "secret" in volume:
            secret_name = volume["secret"]["secretName"]
            secret = cluster.kubectl_json("get", "secret", secret_name, namespace=namespace)
            secret_data[secret_name] = {
                k: base64.b64decode(v) for k, v in secret.get("data", {}).items()
            }
    mounts = materialize_volumes(pod, secret_data, tmp_path / f"pod-{name}")
    env = pod_environment(pod, mounts, namespace=namespace)
    port = free_port()
    env.update(EC2_TERMINAL_LISTEN_HOST="127.0.0.1", EC2_TERMINAL_LISTEN_PORT=str(port))
    env["PATH"] = os.environ["PATH"]
    with pod_command_running(pod, env, tmp_path / f"pod-{name}.log"):
        yield port


@dataclasses.dataclass
class Rig:
    """A test namespace with an operator, a Redis, and workers to start."""

    cluster: KubeCluster
    namespace: str
    redis: RedisServer
    workers: WorkerFactory
    tmp: Path
    operators: OperatorFactory
    operator: OperatorProcess | None = None
    ports: frozenset[int] = frozenset()

    def allow(self, port: int) -> None:
        """An operator on the namespace whose egress policy lets sessions reach `port`.

        The chart's policy allows SSH to port 22 only, and the test targets listen elsewhere.
        """
        if port in self.ports:
            return
        if self.operator is not None:
            self.operator.stop()
        self.ports |= {port}
        egress = {"egress": {"ssh": {"ports": sorted(self.ports)}}}
        env = {"EC2_TERMINAL_OPERATOR_NETWORK_POLICY": json.dumps(egress)}
        self.operator = self.operators(self.namespace, env=env)

    @contextlib.contextmanager
    def session(
        self, name: str, host: str, port: int, env: Mapping[str, str] | None = None
    ) -> Iterator[WorkerProcess]:
        """A Ready session onto host:port, its pod's server running, and a worker reaching it."""
        self.allow(port)
        ready_session(self.cluster, self.namespace, name, target={"host": host, "port": port})
        with session_pod(self.cluster, self.namespace, name, self.tmp) as pod_port:
            yield self.workers(env=self.worker_env(pod_port) | dict(env or {}))

    def worker_env(self, pod_port: int) -> dict[str, str]:
        """The API server by kubeconfig, and every session's server on loopback."""
        return {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "EC2_TERMINAL_HEALTH_SESSION_ENDPOINT": f"http://127.0.0.1:{pod_port}",
        }

    def enqueue(self) -> str:
        """Runs `ec2-terminal health-check --namespace NS` as the CronJob would."""
        env = worker_env(self.redis, self.tmp, {"KUBECONFIG": str(self.cluster.kubeconfig)})
        done = run_command([CLI, "health-check", f"--namespace={self.namespace}"], env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def health(self, name: str) -> dict[str, Any]:
        status = get_session(self.cluster, self.namespace, name).get("status") or {}
        return dict(status.get("healthCheck") or {})

    def wait_health(
        self, name: str, after: Mapping[str, Any], timeout: float = 60
    ) -> dict[str, Any]:
        """Waits for a status.healthCheck newer than `after`; returns it."""

        def fresh() -> dict[str, Any]:
            hc = self.health(name)
            return hc if hc.get("time") and hc.get("time") != after.get("time") else {}

        return wait_for(fresh, timeout=timeout, message=f"a new health check of {name}")

    def reachable(self, name: str, status: str) -> dict[str, Any]:
        def seen() -> dict[str, Any]:
            c = condition(get_session(self.cluster, self.namespace, name), "TargetReachable")
            return c if c.get("status") == status else {}

        return wait_for(seen, timeout=30, message=f"TargetReachable={status}")


@pytest.fixture
def rig(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_factory: OperatorFactory,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> Rig:
    """The test's namespace with Redis and a worker factory; operators start as sessions need."""
    return Rig(kube_cluster, namespace, redis_server, worker_factory, tmp_path, operator_factory)


def restart_sshd(sshd: Sshd) -> None:
    """Starts the same sshd again on its port (its keys and config unchanged)."""
    with sshd.log_path.open("ab") as log:
        sshd.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(sshd.config_path)], stdout=log, stderr=log
        )
    poll(lambda: port_open(sshd.port), timeout=10, what="sshd back")


def _open_connections(port: int) -> bool:
    """Whether some client holds a TCP connection to 127.0.0.1:port (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            line.split()[1] == wanted and line.split()[3] == "01" for line in list(table)[1:]
        )


def test_checks_follow_the_target_down_and_up_again(rig: Rig, sshd: Sshd) -> None:
    with rig.session("web", sshd.host, sshd.port) as worker:
        assert "enqueued 1 health check(s)" in rig.enqueue()
        ok = rig.wait_health("web", {})
        assert ok["result"] == "ok", ok
        assert ok["latencyMs"] > 0
        assert "SSH-2.0-OpenSSH" in ok["message"]
        assert ok["taskId"]
        assert "ms" in rig.reachable("web", "True")["message"]

        sshd.process.terminate()
        sshd.process.wait(10)
        rig.enqueue()
        down = rig.wait_health("web", ok)
        assert down["result"] == "unreachable", down
        assert "refused the connection" in down["message"]
        assert down.get("latencyMs") is None
        assert "refused the connection" in rig.reachable("web", "False")["message"]
        assert get_session(rig.cluster, rig.namespace, "web")["status"]["phase"] == "Ready"
        wait_events(rig.cluster, rig.namespace, "web", ("Warning", "TargetUnreachable"))

        restart_sshd(sshd)
        rig.enqueue()
        back = rig.wait_health("web", down)
        assert back["result"] == "ok", back
        rig.reachable("web", "True")
        wait_events(rig.cluster, rig.namespace, "web", ("Normal", "TargetReachable"))
        assert worker.metric("ec2_terminal_health_checks_total", 'result="ok"') == 2
        assert worker.metric("ec2_terminal_health_checks_total", 'result="unreachable"') == 1
        assert worker.metric("ec2_terminal_health_check_seconds_count") == 3


def test_silent_target_is_a_banner_timeout(rig: Rig) -> None:
    with fake_target(banner_delay=None) as silent, rig.session("mute", "127.0.0.1", silent.port):
        rig.enqueue()
        hc = rig.wait_health("mute", {})
    assert hc["result"] == "banner-timeout", hc
    assert "sent no SSH banner within 2 s" in hc["message"]
    rig.reachable("mute", "False")


def test_queued_checks_survive_a_redis_restart_and_the_worker_reconnects(
    rig: Rig, sshd: Sshd
) -> None:
    names = ["a", "b", "c"]
    rig.allow(sshd.port)
    for name in names:
        ready_session(
            rig.cluster, rig.namespace, name, target={"host": sshd.host, "port": sshd.port}
        )
    with session_pod(rig.cluster, rig.namespace, "a", rig.tmp) as pod_port:
        # No worker yet: the checks wait in Redis while it restarts.
        assert "enqueued 3 health check(s)" in rig.enqueue()
        assert rig.redis.client().llen(QUEUE) == 3
        rig.redis.restart()
        assert rig.redis.client().llen(QUEUE) == 3
        worker = rig.workers(env=rig.worker_env(pod_port))
        first = {n: rig.wait_health(n, {}) for n in names}
        assert {hc["result"] for hc in first.values()} == {"ok"}

        # Redis goes away under a running worker: alive, not consuming, and back by itself.
        rig.redis.stop()
        wait_for(lambda: worker.get("/readyz").status_code == 503, message="readyz 503")
        alive = worker.get("/healthz")
        assert alive.status_code == 200
        assert alive.json()["broker"] == "reconnecting"
        rig.redis.start()
        wait_for(lambda: worker.get("/readyz").status_code == 200, timeout=60, message="readyz")
        rig.enqueue()
        for name in names:
            assert rig.wait_health(name, first[name])["result"] == "ok"


def test_a_check_killed_with_its_worker_runs_again_on_a_new_one(rig: Rig) -> None:
    with (
        fake_target(banner_delay=2.0) as slow,
        rig.session("slow", "127.0.0.1", slow.port, PATIENT) as first,
    ):
        rig.enqueue()
        wait_for(lambda: _open_connections(slow.port), message="the probe under way")
        unacked = rig.redis.client().hgetall("unacked")
        assert len(unacked) == 1
        task_id = json.loads(next(iter(unacked.values())))[0]["headers"]["id"]
        first.kill()
        assert rig.health("slow") == {}
        rig.workers(env=first.env)
        # Redelivered once the visibility timeout (20 s here) has passed.
        hc = rig.wait_health("slow", {}, timeout=90)
    assert hc["result"] == "ok", hc
    assert hc["taskId"] == task_id
    assert "SlowButAlive" in hc["message"]
    assert rig.redis.client().hlen("unacked") == 0


def test_ten_enqueues_during_a_slow_check_run_one_at_a_time(rig: Rig) -> None:
    more = PATIENT | {"EC2_TERMINAL_WORKER_CONCURRENCY": "4"}
    with (
        fake_target(banner_delay=1.5) as slow,
        rig.session("busy", "127.0.0.1", slow.port, more) as worker,
    ):
        settings = HealthCheckSettings(redis_url=rig.redis.url, redis_password=rig.redis.password)
        celery = create_celery(settings)
        for _ in range(10):
            celery.send_task(TASK_CHECK_SESSION, args=[rig.namespace, "busy"], queue=QUEUE)
        celery.close()

        def counted() -> float:
            ok = worker.metric("ec2_terminal_health_checks_total", 'result="ok"')
            skipped = worker.metric("ec2_terminal_health_checks_total", 'result="skipped"')
            return ok + skipped == 10 and ok

        ran = wait_for(counted, timeout=60, message="ten checks done")
    assert overlapping(slow.connections) == []
    assert len(slow.connections) == ran
    assert rig.health("busy")["result"] == "ok"


def test_sigterm_lets_the_running_check_finish(rig: Rig) -> None:
    with (
        fake_target(banner_delay=2.0) as slow,
        rig.session("term", "127.0.0.1", slow.port, PATIENT) as worker,
    ):
        rig.enqueue()
        wait_for(lambda: _open_connections(slow.port), message="the probe under way")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(30) == 0
        hc = rig.health("term")
    assert hc["result"] == "ok", hc
    assert rig.redis.client().hlen("unacked") == 0
