"""Without Kubernetes: the beat schedule checks one session server and its target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_healthcheck import RedisServer, WorkerFactory, run_command, worker_env
from tests.fixtures_kube import wait_for
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import CLI


@pytest.mark.slow
def test_beat_enqueues_and_completes_checks_of_the_server(
    server_factory: ServerFactory, sshd: Sshd, worker_factory: WorkerFactory
) -> None:
    server = server_factory(sshd)
    worker = worker_factory(
        env={
            "EC2_TERMINAL_SERVER_URL": server.origin,
            "EC2_TERMINAL_HEALTH_INTERVAL": "1",
            "EC2_TERMINAL_HOST": sshd.host,
            "EC2_TERMINAL_PORT": str(sshd.port),
        },
        args=["--beat"],
    )

    def checked() -> float:
        return worker.metric("ec2_terminal_health_checks_total", 'result="ok"') >= 3

    wait_for(checked, timeout=30, message="three scheduled checks")
    assert f"server {server.origin}: ok in" in worker.log()
    assert "SSH-2.0-OpenSSH" in worker.log()
    assert worker.metric("ec2_terminal_health_check_queue_depth") <= 1

    server.stop()

    def noticed() -> float:
        return worker.metric("ec2_terminal_health_checks_total", 'result="pod-not-ready"') >= 1

    wait_for(noticed, timeout=30, message="a check of the stopped server")
    assert "cannot reach the session server" in worker.log()


def test_beat_without_a_server_url_is_refused(redis_server: RedisServer, tmp_path: Path) -> None:
    done = run_command([CLI, "worker", "--beat"], worker_env(redis_server, tmp_path))
    assert done.returncode == 2
    assert "--beat checks one session server: set EC2_TERMINAL_SERVER_URL" in done.stderr
    assert "Traceback" not in done.stderr
