"""The session pod's command line, environment and Secret files, run locally against sshd.

The operator renders a Pod; here the test plays the kubelet: it writes each Secret volume's
files, makes the emptyDirs, fills the downward-API variables, and runs the container's
command with exactly that environment (only the listen address changes: loopback, a free
port). A working shell through it proves the operator speaks the server's contract.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from ec2_terminal_operator import resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import parse_session

from tests.fixtures_operator import (
    materialize_volumes,
    pod_command_running,
    pod_environment,
)
from tests.fixtures_sshd import Sshd
from tests.support import free_port
from tests.wsclient import open_client


@pytest.mark.anyio
async def test_rendered_pod_command_serves_a_working_shell(sshd: Sshd, tmp_path: Path) -> None:
    raw = {
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {
            "target": {"host": sshd.host, "port": sshd.port, "user": sshd.user},
            "credentialsSecretRef": {"name": "ssh-key", "key": "ssh-privatekey"},
            "hostKey": {"policy": "Fingerprint", "fingerprint": sshd.host_key_sha256},
        },
    }
    session = parse_session(raw)
    pod = resources.build_pod(session, OperatorConfig())
    token_secret = resources.build_token_secret(session, "t0ken-for-the-pod-command-test")
    secret_data = {
        "demo-token": {k: base64.b64decode(v) for k, v in token_secret["data"].items()},
        "ssh-key": {"ssh-privatekey": sshd.client_key_path.read_bytes()},
    }
    mounts = materialize_volumes(pod, secret_data, tmp_path / "volumes")
    env = pod_environment(pod, mounts)
    port = free_port()
    # The one deviation from the pod: tests listen on loopback only.
    env.update(EC2_TERMINAL_LISTEN_HOST="127.0.0.1", EC2_TERMINAL_LISTEN_PORT=str(port))
    env["PATH"] = os.environ["PATH"]
    log_path = tmp_path / "server.log"
    with pod_command_running(pod, env, log_path):
        base_url = f"http://127.0.0.1:{port}{env['EC2_TERMINAL_BASE_PATH']}"
        client = await open_client(base_url, "t0ken-for-the-pod-command-test")
        try:
            await client.hello()
            await client.send_input("echo pod-$((6*7))\n")
            await client.until_text("pod-42")
        finally:
            await client.ws.close()
    assert "t0ken-for-the-pod-command-test" not in log_path.read_text()
