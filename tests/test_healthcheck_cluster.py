"""Health checks end to end: the real control plane and operator, Debian's Redis, real Celery
worker processes, and each session pod's command run locally (kwok's pods cannot answer)."""

from __future__ import annotations

import base64
import contextlib
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
    fake_target,
    overlapping,
    worker_env,
)
from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import (
    OperatorProcess,
    condition,
    get_session,
    materialize_volumes,
    pod_command_running,
    pod_environment,
    ready_session,
)
from tests.fixtures_sshd import SSHD, Sshd
from tests.support import CLI, free_port, poll, port_open

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

QUEUE = "ec2-terminal-health"


def target(host: str, port: int, user: str = "ec2-user") -> dict[str, Any]:
    return {"host": host, "port": port, "user": user}


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


def cluster_worker_env(cluster: KubeCluster, pod_port: int) -> dict[str, str]:
    """The worker reaches the API server by kubeconfig and each session's server on loopback."""
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "EC2_TERMINAL_HEALTH_SESSION_ENDPOINT": f"http://127.0.0.1:{pod_port}",
    }


def enqueue(cluster: KubeCluster, redis_server: RedisServer, namespace: str, tmp: Path) -> str:
    """Runs `ec2-terminal health-check --namespace NS` as the CronJob would; returns its output."""
    env = worker_env(redis_server, tmp, {"KUBECONFIG": str(cluster.kubeconfig)})
    done = subprocess.run(
        [CLI, "health-check", f"--namespace={namespace}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def health(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        (get_session(cluster, namespace, name).get("status") or {}).get("healthCheck") or {}
    )


def wait_health(
    cluster: KubeCluster, namespace: str, name: str, after: Mapping[str, Any], timeout: float = 60
) -> dict[str, Any]:
    """Waits for a status.healthCheck newer than `after`; returns it."""

    def fresh() -> dict[str, Any]:
        hc = health(cluster, namespace, name)
        return hc if hc.get("time") and hc.get("time") != after.get("time") else {}

    return wait_for(fresh, timeout=timeout, message=f"a new health check of {name}")


def reachable(cluster: KubeCluster, namespace: str, name: str, status: str) -> dict[str, Any]:
    def seen() -> dict[str, Any]:
        c = condition(get_session(cluster, namespace, name), "TargetReachable")
        return c if c.get("status") == status else {}

    return wait_for(seen, timeout=30, message=f"TargetReachable={status}")


def events(cluster: KubeCluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = cluster.kubectl_json(
        "get",
        "events",
        f"--field-selector=involvedObject.kind=TerminalSession,involvedObject.name={name}",
        namespace=namespace,
    )["items"]
    return [(e["type"], e["reason"], e.get("message", "")) for e in items]


def restart_sshd(sshd: Sshd) -> None:
    """Starts the same sshd again on its port (its keys and config unchanged)."""
    with sshd.log_path.open("ab") as log:
        sshd.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(sshd.config_path)], stdout=log, stderr=log
        )
    poll(lambda: port_open(sshd.port), timeout=10, what="sshd back")


def test_checks_follow_the_target_down_and_up_again(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    sshd: Sshd,
    tmp_path: Path,
) -> None:
    ready_session(kube_cluster, namespace, "web", target=target(sshd.host, sshd.port, sshd.user))
    with session_pod(kube_cluster, namespace, "web", tmp_path) as pod_port:
        worker = worker_factory(env=cluster_worker_env(kube_cluster, pod_port))
        out = enqueue(kube_cluster, redis_server, namespace, tmp_path)
        assert "enqueued 1 health check(s)" in out
        ok = wait_health(kube_cluster, namespace, "web", {})
        assert ok["result"] == "ok", ok
        assert ok["latencyMs"] > 0
        assert "SSH-2.0-OpenSSH" in ok["message"]
        assert ok["taskId"]
        cond = reachable(kube_cluster, namespace, "web", "True")
        assert "ms" in cond["message"]

        sshd.process.terminate()
        sshd.process.wait(10)
        enqueue(kube_cluster, redis_server, namespace, tmp_path)
        down = wait_health(kube_cluster, namespace, "web", ok)
        assert down["result"] == "unreachable", down
        assert "refused the connection" in down["message"]
        assert down.get("latencyMs") is None
        cond = reachable(kube_cluster, namespace, "web", "False")
        assert "unreachable" in cond["message"]
        assert get_session(kube_cluster, namespace, "web")["status"]["phase"] == "Ready"
        wait_for(
            lambda: any(
                t == "Warning" and r == "TargetUnreachable" and "refused" in m
                for t, r, m in events(kube_cluster, namespace, "web")
            ),
            message="a TargetUnreachable Warning Event",
        )

        restart_sshd(sshd)
        enqueue(kube_cluster, redis_server, namespace, tmp_path)
        back = wait_health(kube_cluster, namespace, "web", down)
        assert back["result"] == "ok", back
        reachable(kube_cluster, namespace, "web", "True")
        wait_for(
            lambda: (
                ("Normal", "TargetReachable")
                in {(t, r) for t, r, _ in events(kube_cluster, namespace, "web")}
            ),
            message="a TargetReachable Normal Event",
        )
        assert worker.metric("ec2_terminal_health_checks_total", 'result="ok"') == 2
        assert worker.metric("ec2_terminal_health_checks_total", 'result="unreachable"') == 1
        assert worker.metric("ec2_terminal_health_check_seconds_count") == 3


def test_silent_target_is_a_banner_timeout(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    with fake_target(banner_delay=None) as silent:
        ready_session(kube_cluster, namespace, "mute", target=target("127.0.0.1", silent.port))
        with session_pod(kube_cluster, namespace, "mute", tmp_path) as pod_port:
            worker_factory(env=cluster_worker_env(kube_cluster, pod_port))
            enqueue(kube_cluster, redis_server, namespace, tmp_path)
            hc = wait_health(kube_cluster, namespace, "mute", {})
    assert hc["result"] == "banner-timeout", hc
    assert "sent no SSH banner within 2 s" in hc["message"]
    reachable(kube_cluster, namespace, "mute", "False")


def test_queued_checks_survive_a_redis_restart_and_the_worker_reconnects(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    sshd: Sshd,
    tmp_path: Path,
) -> None:
    names = ["a", "b", "c"]
    for name in names:
        ready_session(kube_cluster, namespace, name, target=target(sshd.host, sshd.port))
    with session_pod(kube_cluster, namespace, "a", tmp_path) as pod_port:
        # No worker yet: the checks wait in Redis while it restarts.
        assert "enqueued 3 health check(s)" in enqueue(
            kube_cluster, redis_server, namespace, tmp_path
        )
        assert redis_server.client().llen(QUEUE) == 3
        redis_server.restart()
        assert redis_server.client().llen(QUEUE) == 3
        worker = worker_factory(env=cluster_worker_env(kube_cluster, pod_port))
        first = {n: wait_health(kube_cluster, namespace, n, {}) for n in names}
        assert {hc["result"] for hc in first.values()} == {"ok"}

        # Redis goes away under a running worker: alive, not consuming, and back by itself.
        redis_server.stop()
        wait_for(lambda: worker.get("/readyz").status_code == 503, message="readyz 503")
        alive = worker.get("/healthz")
        assert alive.status_code == 200
        assert alive.json()["broker"] == "reconnecting"
        redis_server.start()
        wait_for(lambda: worker.get("/readyz").status_code == 200, timeout=60, message="readyz")
        enqueue(kube_cluster, redis_server, namespace, tmp_path)
        for name in names:
            assert wait_health(kube_cluster, namespace, name, first[name])["result"] == "ok"


def test_a_check_killed_with_its_worker_runs_again_on_a_new_one(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    with fake_target(banner_delay=3.0) as slow:
        ready_session(kube_cluster, namespace, "slow", target=target("127.0.0.1", slow.port))
        env = cluster_worker_env(kube_cluster, 0) | {
            "EC2_TERMINAL_HEALTH_BANNER_TIMEOUT": "4",
            "EC2_TERMINAL_HEALTH_SOFT_TIME_LIMIT": "12",
            "EC2_TERMINAL_HEALTH_TIME_LIMIT": "14",
            "EC2_TERMINAL_HEALTH_VISIBILITY_TIMEOUT": "20",
        }
        with session_pod(kube_cluster, namespace, "slow", tmp_path) as pod_port:
            env["EC2_TERMINAL_HEALTH_SESSION_ENDPOINT"] = f"http://127.0.0.1:{pod_port}"
            first = worker_factory(env=env)
            enqueue(kube_cluster, redis_server, namespace, tmp_path)
            wait_for(lambda: slow.connections or _open_connections(slow.port), message="probe")
            unacked = redis_server.client().hgetall("unacked")
            assert len(unacked) == 1
            task_id = json.loads(next(iter(unacked.values())))[0]["headers"]["id"]
            first.kill()
            assert health(kube_cluster, namespace, "slow") == {}
            worker_factory(env=env)
            # Redelivered once the visibility timeout (20 s here) has passed.
            hc = wait_health(kube_cluster, namespace, "slow", {}, timeout=90)
    assert hc["result"] == "ok", hc
    assert hc["taskId"] == task_id
    assert "SlowButAlive" in hc["message"]
    assert redis_server.client().hlen("unacked") == 0


def _open_connections(port: int) -> bool:
    """Whether some client holds a TCP connection to 127.0.0.1:port (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            line.split()[1] == wanted and line.split()[3] == "01" for line in list(table)[1:]
        )


def test_ten_enqueues_during_a_slow_check_run_one_at_a_time(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    with fake_target(banner_delay=1.5) as slow:
        ready_session(kube_cluster, namespace, "busy", target=target("127.0.0.1", slow.port))
        with session_pod(kube_cluster, namespace, "busy", tmp_path) as pod_port:
            worker = worker_factory(
                env=cluster_worker_env(kube_cluster, pod_port)
                | {"EC2_TERMINAL_WORKER_CONCURRENCY": "4"}
            )
            settings = HealthCheckSettings(
                redis_url=redis_server.url, redis_password=redis_server.password
            )
            celery = create_celery(settings)
            for _ in range(10):
                celery.send_task(TASK_CHECK_SESSION, args=[namespace, "busy"], queue=QUEUE)
            celery.close()

            def counted() -> float:
                ok = worker.metric("ec2_terminal_health_checks_total", 'result="ok"')
                skipped = worker.metric("ec2_terminal_health_checks_total", 'result="skipped"')
                return ok + skipped == 10 and ok

            ran = wait_for(counted, timeout=60, message="ten checks done")
    assert overlapping(slow.connections) == []
    assert len(slow.connections) == ran
    assert health(kube_cluster, namespace, "busy")["result"] == "ok"


def test_sigterm_lets_the_running_check_finish(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    with fake_target(banner_delay=2.0) as slow:
        ready_session(kube_cluster, namespace, "term", target=target("127.0.0.1", slow.port))
        with session_pod(kube_cluster, namespace, "term", tmp_path) as pod_port:
            worker = worker_factory(env=cluster_worker_env(kube_cluster, pod_port))
            enqueue(kube_cluster, redis_server, namespace, tmp_path)
            wait_for(lambda: _open_connections(slow.port), message="the probe under way")
            worker.process.send_signal(signal.SIGTERM)
            assert worker.process.wait(30) == 0
            hc = health(kube_cluster, namespace, "term")
    assert hc["result"] == "ok", hc
    assert redis_server.client().hlen("unacked") == 0
