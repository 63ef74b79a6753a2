"""Fixtures for operator tests: the CRD, an operator subprocess, TerminalSession helpers."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kube import KubeCluster, wait_for
from tests.support import console_script, free_port, stop

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "charts/ec2-terminal/crds/terminalsessions.ec2-terminal.io.yaml"
CRD_NAME = "terminalsessions.ec2-terminal.io"
FINGERPRINT = "SHA256:" + "x" * 43
# A syntactically valid key is not needed: the operator only checks that the Secret has the key.
FAKE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture(scope="session")
def terminalsession_crd(kube_cluster: KubeCluster) -> str:
    """The TerminalSession CRD, installed (or updated) once per test session."""
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))

    def established() -> bool:
        crd = kube_cluster.kubectl_json("get", "crd", CRD_NAME)
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, timeout=60, message=f"CRD {CRD_NAME} established")
    return CRD_NAME


@dataclasses.dataclass
class OperatorProcess:
    """An `ec2-terminal-operator` subprocess watching some namespaces."""

    proc: subprocess.Popen[bytes]
    liveness_url: str
    log_path: Path
    namespaces: tuple[str, ...] = ()

    def alive(self) -> bool:
        """Whether the liveness endpoint answers 200."""
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        """The operator's output so far."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if kopf does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


OperatorFactory = Callable[..., OperatorProcess]
# The operator's settings in cluster tests: a few images and one node label beyond the
# defaults, so tests can change a session's image or make its pod unschedulable; a session
# domain, and explicit hosts under example.com.
TEST_IMAGE_PREFIX = "registry.test/ec2-terminal:"
SESSION_DOMAIN = "sessions.example.com"
TEST_POLICY = {
    "EC2_TERMINAL_OPERATOR_SESSION_IMAGE": "ec2-terminal:test",
    "EC2_TERMINAL_OPERATOR_SESSION_DOMAIN": SESSION_DOMAIN,
    "EC2_TERMINAL_OPERATOR_ALLOWED_HOSTS": "*.example.com",
    "EC2_TERMINAL_OPERATOR_ALLOWED_INGRESS_CLASSES": "nginx",
    "EC2_TERMINAL_OPERATOR_ALLOWED_IMAGES": TEST_IMAGE_PREFIX + "*",
    "EC2_TERMINAL_OPERATOR_ALLOWED_NODE_SELECTORS": '{"ec2-terminal.io/none": ["true"]}',
}


@pytest.fixture
def operator_factory(
    kube_cluster: KubeCluster, terminalsession_crd: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    """Starts operator subprocesses (namespaced, resync 1 s); stops them after the test."""
    started: list[OperatorProcess] = []

    def start(
        *namespaces: str,
        kubeconfig: Path | None = None,
        env: Mapping[str, str] | None = None,
        resync: float = 1.0,
    ) -> OperatorProcess:
        port = free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log_path = tmp_path / f"operator-{len(started)}.log"
        argv = [
            console_script("ec2-terminal-operator"),
            *(f"--namespace={ns}" for ns in namespaces),
            f"--liveness={liveness}",
            f"--resync-seconds={resync}",
            "--log-format=plain",
        ]
        full_env = {**kube_cluster.env, **TEST_POLICY}
        if kubeconfig is not None:
            full_env["KUBECONFIG"] = str(kubeconfig)
        full_env.update(env or {})
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        op = OperatorProcess(
            proc=proc, liveness_url=liveness, log_path=log_path, namespaces=namespaces
        )
        started.append(op)
        wait_for(
            lambda: proc.poll() is not None or op.alive(),
            timeout=60,
            message="operator liveness endpoint",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited {proc.returncode}:\n{op.log()}")
        return op

    yield start
    # Sessions go while an operator still runs, so its finalizer is released properly
    # instead of the namespace teardown waiting and stripping it.
    for op in started:
        if op.proc.poll() is None:
            for ns in op.namespaces:
                kube_cluster.kubectl(
                    "delete",
                    "ts",
                    "--all",
                    "--wait=true",
                    "--timeout=60s",
                    namespace=ns,
                    check=False,
                )
    for op in started:
        op.stop()
    artifacts = ROOT / "test-artifacts"
    if artifacts.is_dir():
        for op in started:
            with contextlib.suppress(OSError):
                (
                    artifacts / f"{os.getpid()}-{op.log_path.parent.name}-{op.log_path.name}"
                ).write_text(op.log())


@pytest.fixture
def operator(operator_factory: OperatorFactory, namespace: str) -> OperatorProcess:
    """One operator watching the test's namespace."""
    return operator_factory(namespace)


def session_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A valid TerminalSession onto a host with an SSH key, overridable per spec key."""
    base: dict[str, Any] = {
        "target": {"host": "10.0.0.5", "user": "ec2-user"},
        "credentialsSecretRef": {"name": "ssh-key"},
        "hostKey": {"policy": "Fingerprint", "fingerprint": FINGERPRINT},
    }
    base.update(spec)
    return {
        "apiVersion": "ec2-terminal.io/v1alpha1",
        "kind": "TerminalSession",
        "metadata": {"name": name},
        "spec": base,
    }


USABLE = {"ec2-terminal.io/usable-by-sessions": "true"}


def key_secret(name: str = "ssh-key", key: bytes = FAKE_KEY.encode()) -> dict[str, Any]:
    """The Secret a session's credentialsSecretRef names, opted in for use by sessions."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": dict(USABLE)},
        "type": "Opaque",
        "data": {"ssh-privatekey": base64.b64encode(key).decode()},
    }


def get_session(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    """The TerminalSession as the API server has it."""
    result: dict[str, Any] = cluster.kubectl_json("get", "ts", name, namespace=namespace)
    return result


def condition(ts: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """One status condition ({} when absent)."""
    for c in (ts.get("status") or {}).get("conditions") or ():
        if c.get("type") == kind:
            return dict(c)
    return {}


def wait_phase(
    cluster: KubeCluster, namespace: str, name: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    """Waits until the session's status.phase is `phase`; returns the session."""

    def reached() -> dict[str, Any]:
        ts = get_session(cluster, namespace, name)
        return ts if (ts.get("status") or {}).get("phase") == phase else {}

    return wait_for(reached, timeout=timeout, message=f"{namespace}/{name} phase {phase}")


def ready_session(cluster: KubeCluster, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """Applies the SSH key Secret and a session, and waits until it is Ready; returns it."""
    cluster.apply(key_secret(), namespace=namespace)
    cluster.apply(session_manifest(name, **spec), namespace=namespace)
    return wait_phase(cluster, namespace, name, "Ready")


def patch_spec(cluster: KubeCluster, namespace: str, name: str, **spec: Any) -> None:
    """Merge-patches fields of a TerminalSession's spec, as `kubectl patch --type=merge`."""
    cluster.kubectl(
        "patch",
        "ts",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
        namespace=namespace,
    )


def can_i(cluster: KubeCluster, namespace: str, account: str, verb: str, what: str) -> bool:
    """`kubectl auth can-i` as the ServiceAccount `account` of `namespace`."""
    answer = cluster.kubectl(
        "auth",
        "can-i",
        verb,
        what,
        f"--as=system:serviceaccount:{namespace}:{account}",
        namespace=namespace,
        check=False,
    )
    return answer.strip() == "yes"


def report_activity(
    cluster: KubeCluster, namespace: str, name: str, connections: int, last: str | None = None
) -> None:
    """Writes what the session pod's ActivityReporter would into the session's Lease."""
    uid = cluster.kubectl_json("get", "pod", name, namespace=namespace)["metadata"]["uid"]
    annotations = {"ec2-terminal.io/active-connections": str(connections)}
    if last is not None:
        annotations["ec2-terminal.io/last-activity"] = last
    patch = {"metadata": {"annotations": annotations}, "spec": {"holderIdentity": uid}}
    cluster.kubectl(
        "patch",
        "lease",
        f"{name}-activity",
        "--type=merge",
        "-p",
        json.dumps(patch),
        namespace=namespace,
    )


def write_health_check(
    cluster: KubeCluster, namespace: str, name: str, result: str, message: str = ""
) -> None:
    """Writes status.healthCheck as the health-check worker does."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    hc = {"time": now, "result": result, "latencyMs": 12, "taskId": "t1", "message": message}
    cluster.kubectl(
        "patch",
        "ts",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"healthCheck": hc}}),
        namespace=namespace,
    )


def passed_since(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    """Waits for a pass that began after this call; returns the session it left.

    It writes a health-check result no earlier pass could have seen and waits until the
    status reflects it: that pass observed the world as it is now.
    """
    marker = f"pass-marker-{uuid.uuid4().hex[:8]}"
    write_health_check(cluster, namespace, name, "error", marker)

    def seen() -> dict[str, Any]:
        ts = get_session(cluster, namespace, name)
        return ts if marker in condition(ts, "TargetReachable").get("message", "") else {}

    return wait_for(seen, message=f"a pass over {namespace}/{name}")


def events(cluster: KubeCluster, namespace: str, name: str) -> list[tuple[str, str]]:
    items = cluster.kubectl_json(
        "get",
        "events",
        f"--field-selector=involvedObject.kind=TerminalSession,involvedObject.name={name}",
        namespace=namespace,
    )["items"]
    return [(e["type"], e["reason"]) for e in items]


def wait_events(
    cluster: KubeCluster, namespace: str, name: str, *wanted: tuple[str, str]
) -> list[tuple[str, str]]:
    """Waits until the session has these (type, reason) Events (kopf posts them async)."""

    def seen() -> list[tuple[str, str]]:
        got = events(cluster, namespace, name)
        return got if set(wanted) <= set(got) else []

    return wait_for(seen, timeout=30, message=f"events {wanted} on {name}")


def exists(cluster: KubeCluster, namespace: str, kind: str, name: str) -> bool:
    """Whether an object exists (and is not being deleted)."""
    out = cluster.kubectl(
        "get", kind, name, "--ignore-not-found", "-o", "name", namespace=namespace
    ).strip()
    return bool(out)


def names(cluster: KubeCluster, namespace: str, kind: str, selector: str = "") -> list[str]:
    """Names of the objects of a kind (optionally by label selector)."""
    args = ["get", kind]
    if selector:
        args.append(f"--selector={selector}")
    items = cluster.kubectl_json(*args, namespace=namespace)["items"]
    return sorted(i["metadata"]["name"] for i in items)


# --- playing the kubelet: run a rendered session pod's command as a local process ---


def materialize_volumes(
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


def pod_environment(
    pod: dict[str, Any], mounts: dict[str, Path], namespace: str = "team-a"
) -> dict[str, str]:
    """The container's environment as the kubelet sets it, with mount paths made local."""
    env: dict[str, str] = {}
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": namespace,
        "metadata.uid": pod["metadata"].get("uid", "pod-uid"),
    }
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


@contextlib.contextmanager
def pod_command_running(
    pod: Mapping[str, Any], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs the pod's container command with `env` until /readyz answers; stops it afterwards."""
    command = pod["spec"]["containers"][0]["command"]
    argv = [console_script(command[0]), *command[1:]]
    port = env["EC2_TERMINAL_LISTEN_PORT"]
    with log_path.open("wb") as log:  # exactly `env`, as the pod would have it
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # checked below, with the log
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                return bool(r.status == 200)

        wait_for(ready, timeout=30, message="the pod's server /readyz")
        assert proc.poll() is None, f"server exited:\n{log_path.read_text()}"
        yield proc
    finally:
        stop(proc, timeout=15)
