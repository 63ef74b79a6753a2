"""The session pod's command line, environment and Secret files, run locally against sshd.

The operator renders a Pod; here the test plays the kubelet: it writes each Secret volume's
files, makes the emptyDirs, fills the downward-API variables, and runs the container's
command with exactly that environment (only the listen address changes: loopback, a free
port). A working shell through it proves the operator speaks the server's contract.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ec2_terminal_operator import resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import parse_session

from tests.fixtures_kube import wait_for
from tests.fixtures_operator import free_port
from tests.fixtures_sshd import Sshd
from tests.wsclient import open_client


def _materialize(
    pod: dict[str, Any], secret_data: dict[str, dict[str, bytes]], root: Path
) -> dict[str, Path]:
    """Creates every volume under root; returns mountPath -> local directory."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in pod["spec"]["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        local = root / mount["name"]
        local.mkdir(parents=True)
        if "secret" in volume:
            data = secret_data[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                path = local / item["path"]
                path.write_bytes(data[item["key"]])
                path.chmod(volume["secret"]["defaultMode"])
        mounts[mount["mountPath"]] = local
    return mounts


def _environment(pod: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
    env: dict[str, str] = {}
    fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": "team-a"}
    for entry in pod["spec"]["containers"][0]["env"]:
        if "valueFrom" in entry:
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
            continue
        value = entry["value"]
        for mount_path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                value = str(local) + value[len(mount_path) :]
                break
        env[entry["name"]] = value
    return env


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


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
    mounts = _materialize(pod, secret_data, tmp_path / "volumes")
    env = _environment(pod, mounts)
    port = free_port()
    # The one deviation from the pod: tests listen on loopback only.
    env.update(EC2_TERMINAL_LISTEN_HOST="127.0.0.1", EC2_TERMINAL_LISTEN_PORT=str(port))
    env["PATH"] = os.environ["PATH"]
    command = pod["spec"]["containers"][0]["command"]
    argv = [str(Path(sys.executable).parent / command[0]), *command[1:]]
    log_path = tmp_path / "server.log"
    proc = _spawn(argv, env, log_path)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # checked below, with the log
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                return bool(r.status == 200)

        wait_for(ready, timeout=30, message="rendered server /readyz")
        assert proc.poll() is None, f"server exited:\n{log_path.read_text()}"
        base_url = f"http://127.0.0.1:{port}{env['EC2_TERMINAL_BASE_PATH']}"
        client = await open_client(base_url, "t0ken-for-the-pod-command-test")
        try:
            await client.hello()
            await client.send_input("echo pod-$((6*7))\n")
            await client.until_text("pod-42")
        finally:
            await client.ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "t0ken-for-the-pod-command-test" not in log_path.read_text()
