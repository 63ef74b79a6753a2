"""Pytest plugin: a real local Kubernetes control plane (hack/cluster) for tests marked ``cluster``.

The cluster is kube-apiserver, etcd, kube-controller-manager and kube-scheduler built from source
(versions in hack/versions.env) plus kwok, which fakes two nodes (``kwok-node-0``,
``kwok-node-1``, label ``type=kwok``, no taints) so scheduled pods reach Running and Ready
without a container runtime. Nothing runs inside those pods: no logs, no exec, no traffic.

Fixtures:

- ``kube_cluster`` (session) -> :class:`KubeCluster`: ``kubeconfig`` (admin, system:masters),
  ``server``, ``kubectl_path``, ``helm_path``, ``env`` (os.environ plus KUBECONFIG and private
  helm directories; pass it to subprocesses such as kopf), and the runners
  ``kubectl(*args, input=None, namespace=None, check=True, timeout=60) -> str``,
  ``kubectl_json(*args, namespace=None) -> Any``, ``helm(*args, ...) -> str`` and
  ``apply(manifest, namespace=None) -> str``. A failing command raises :class:`KubectlError`.
- ``kubeconfig`` (session) -> Path; ``kubectl`` (session) -> ``kube_cluster.kubectl``;
  ``helm`` (session) -> Path of the helm binary.
- ``namespace`` (per test) -> str: a fresh namespace ``t-<8 hex>`` whose ``default``
  ServiceAccount exists. Teardown deletes the custom resources in it first (stripping finalizers
  that are still there after a grace period, so a stopped operator cannot wedge teardown), then
  deletes the namespace without waiting (that takes the namespace controller seconds); at the
  end of the session ``kube_test_namespaces`` waits until every one of them is gone, and fails
  if one is stuck.

Helper: ``wait_for(predicate, timeout=30, interval=0.2, message="")`` polls until the predicate
returns something truthy and returns it; exceptions inside it count as "not yet".

The session fixture reuses a cluster that is already up (``hack/cluster up`` by hand, or
another pytest session), otherwise starts one and stops it at the end, only if a fixture
started it and no other live pytest session still uses it. With ``EC2_TERMINAL_KUBECONFIG``
set it uses that kubeconfig and never starts or stops anything. It refuses any cluster whose
server is not a loopback address or that lacks the ConfigMap
``kube-system/ec2-terminal-test-cluster`` which hack/cluster writes. Any test using these
fixtures is marked ``cluster`` automatically. See docs/cluster.md.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import yaml

log = logging.getLogger(__name__)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
HACK_CLUSTER = ROOT / "hack/cluster"
MARKER = ("kube-system", "ec2-terminal-test-cluster")
CLUSTER_FIXTURES = frozenset(
    {"kube_cluster", "kubeconfig", "kubectl", "helm", "namespace", "kube_test_namespaces"}
)
TEST_NAMESPACE_LABEL = "ec2-terminal.io/test"


class KubectlError(Exception):
    """A kubectl or helm command exited non-zero; ``stderr`` holds its message."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{shlex.join(argv)} exited {returncode}: {stderr.strip()}")
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2, message: str = ""
) -> T:
    """Polls predicate until it returns something truthy and returns that; else TimeoutError."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # a predicate that raises means "not yet"
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            raise TimeoutError(f"{what}: not true after {timeout:g}s (last: {last!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class KubeCluster:
    """A running test cluster and runners for its kubectl and helm."""

    kubeconfig: Path
    server: str
    kubectl_path: Path
    helm_path: Path
    env: Mapping[str, str]

    def _run(
        self, argv: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=dict(self.env)
        )
        if check and res.returncode != 0:
            raise KubectlError(argv, res.returncode, res.stdout, res.stderr)
        return res

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        namespace: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> str:
        """Runs kubectl against this cluster and returns its stdout."""
        argv = [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}"]
        if namespace:
            argv.append(f"--namespace={namespace}")
        return self._run([*argv, *args], input, check, timeout).stdout

    def ca_certificate(self) -> bytes:
        """The API server's CA certificate (PEM), inline in the kubeconfig or in a file it names."""
        config: Any = yaml.safe_load(self.kubeconfig.read_text())
        entry = config["clusters"][0]["cluster"]
        if "certificate-authority-data" in entry:
            return base64.b64decode(entry["certificate-authority-data"])
        path = Path(entry["certificate-authority"])
        return (path if path.is_absolute() else self.kubeconfig.parent / path).read_bytes()

    def kubectl_json(self, *args: str, namespace: str | None = None) -> Any:
        """Runs kubectl with ``-o json`` and returns the parsed output."""
        return json.loads(self.kubectl(*args, "-o", "json", namespace=namespace))

    def helm(
        self,
        *args: str,
        namespace: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> str:
        """Runs helm against this cluster and returns its stdout."""
        argv = [str(self.helm_path), f"--kubeconfig={self.kubeconfig}"]
        if namespace:
            argv.append(f"--namespace={namespace}")
        return self._run([*argv, *args], None, check, timeout).stdout

    def apply(
        self, manifest: str | Mapping[str, Any] | list[Any], namespace: str | None = None
    ) -> str:
        """Applies YAML text, one object, or a list of objects (server-side validation)."""
        if isinstance(manifest, str):
            text = manifest
        elif isinstance(manifest, list):
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest})
        else:
            text = json.dumps(manifest)
        return self.kubectl("apply", "-f", "-", input=text, namespace=namespace)


def check_test_cluster(cluster: KubeCluster) -> None:
    """Refuses a cluster that is not the local test cluster made by hack/cluster."""
    host = urlsplit(cluster.server).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        pytest.fail(
            f"refusing to run against {cluster.server}: not a loopback address", pytrace=False
        )
    res = cluster.kubectl("get", "configmap", "-n", MARKER[0], MARKER[1], "-o", "name", check=False)
    if res.strip() != f"configmap/{MARKER[1]}":
        pytest.fail(
            f"refusing to run against {cluster.server}: no ConfigMap {MARKER[0]}/{MARKER[1]} "
            "(not a cluster made by hack/cluster)",
            pytrace=False,
        )


def server_of(kubeconfig: Path) -> str:
    """The server URL of the current context's cluster (kubeconfig files hack/cluster writes)."""
    for line in kubeconfig.read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "server":
            return value.strip()
    raise ValueError(f"no server in {kubeconfig}")


def cluster_env() -> dict[str, str]:
    """Binary paths and KUBECONFIG as ``hack/cluster env`` reports them."""
    out = subprocess.run(
        [str(HACK_CLUSTER), "env"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def state_dir() -> Path:
    default = Path.home() / ".cache/ec2-terminal/cluster/run"
    cache = os.environ.get("EC2_TERMINAL_CACHE")
    if cache:
        default = Path(cache) / "cluster/run"
    return Path(os.environ.get("EC2_TERMINAL_CLUSTER_DIR") or default).resolve()


@contextlib.contextmanager
def sessions_lock(directory: Path) -> Iterator[Path]:
    """Serialises start, join and leave between pytest sessions sharing one cluster."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    sessions = directory.parent / f".{directory.name}.sessions"
    sessions.mkdir(exist_ok=True)
    with open(directory.parent / f".{directory.name}.sessions.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield sessions
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def live_sessions(sessions: Path) -> list[int]:
    pids = []
    for entry in sessions.glob("[0-9]*"):
        pid = int(entry.name)
        if Path(f"/proc/{pid}").exists():
            pids.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return pids


def run_hack_cluster(*args: str, timeout: float = 300) -> None:
    res = subprocess.run(
        [str(HACK_CLUSTER), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if res.returncode != 0:
        pytest.fail(f"hack/cluster {' '.join(args)} failed:\n{res.stderr[-4000:]}", pytrace=False)


def make_cluster(kubeconfig: Path, tools: Mapping[str, str], helm_home: Path) -> KubeCluster:
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(kubeconfig),
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_CONFIG_HOME=str(helm_home / "config"),
        HELM_DATA_HOME=str(helm_home / "data"),
    )
    return KubeCluster(
        kubeconfig=kubeconfig,
        server=server_of(kubeconfig),
        kubectl_path=Path(tools["EC2_TERMINAL_KUBECTL"]),
        helm_path=Path(tools["EC2_TERMINAL_HELM"]),
        env=env,
    )


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The local test cluster: reused when up, else started now and stopped after the session."""
    helm_home = tmp_path_factory.mktemp("helm")
    external = os.environ.get("EC2_TERMINAL_KUBECONFIG")
    if external:
        cluster = make_cluster(Path(external), cluster_env(), helm_home)
        check_test_cluster(cluster)
        yield cluster
        return
    directory = state_dir()
    me = os.getpid()
    with sessions_lock(directory) as sessions:
        (sessions / str(me)).touch()
        started_marker = sessions / "started-by-fixture"
        up = subprocess.run([str(HACK_CLUSTER), "status"], capture_output=True, check=False)
        if up.returncode == 0 and live_sessions(sessions) == [me]:
            # Up, and no live session started it: someone ran hack/cluster up; leave it running.
            started_marker.unlink(missing_ok=True)
        if up.returncode != 0:
            log.info("starting the test cluster in %s", directory)
            run_hack_cluster("up", "--no-build")
            started_marker.touch()
    try:
        cluster = make_cluster(directory / "admin.kubeconfig", cluster_env(), helm_home)
        check_test_cluster(cluster)
        yield cluster
    finally:
        with sessions_lock(directory) as sessions:
            (sessions / str(me)).unlink(missing_ok=True)
            others = live_sessions(sessions)
            if started_marker.exists() and not others:
                run_hack_cluster("down")
                started_marker.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def kubeconfig(kube_cluster: KubeCluster) -> Path:
    """The admin kubeconfig of the test cluster."""
    return kube_cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kube_cluster: KubeCluster) -> Callable[..., str]:
    """``kubectl(*args, input=None, namespace=None, check=True, timeout=60) -> stdout``."""
    return kube_cluster.kubectl


@pytest.fixture(scope="session")
def helm(kube_cluster: KubeCluster) -> Path:
    """Path of the helm binary matching the cluster (run it with ``kube_cluster.helm``)."""
    return kube_cluster.helm_path


def namespaced_custom_resources(cluster: KubeCluster) -> list[str]:
    """``plural.group`` of every namespaced CRD in the cluster."""
    crds = cluster.kubectl_json("get", "customresourcedefinitions")
    return [
        f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
        for crd in crds["items"]
        if crd["spec"]["scope"] == "Namespaced"
    ]


def delete_namespace(cluster: KubeCluster, name: str, grace: float = 30.0) -> None:
    """Deletes custom resources first (so their operator can still clean up), then the namespace."""
    kinds = namespaced_custom_resources(cluster)
    for kind in kinds:
        cluster.kubectl(
            "delete", kind, "--all", "--wait=false", "--ignore-not-found", namespace=name
        )

    def remaining() -> list[str]:
        if not kinds:
            return []
        out = cluster.kubectl("get", ",".join(kinds), "-o", "name", namespace=name, check=False)
        return out.split()

    try:
        wait_for(
            lambda: not remaining(), timeout=grace, message=f"custom resources in {name} deleted"
        )
    except TimeoutError:
        stuck = remaining()
        log.warning("stripping finalizers from %s in namespace %s", stuck, name)
        for obj in stuck:
            cluster.kubectl(
                "patch",
                obj,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                namespace=name,
                check=False,
            )
    # The namespace controller takes seconds per namespace; the session waits for all at the end.
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def wait_namespaces_gone(cluster: KubeCluster, names: list[str], timeout: float = 120) -> None:
    """Waits until none of NAMES exists any more."""

    def gone() -> bool:
        out = cluster.kubectl("get", "namespaces", "-o", "name")
        return not {f"namespace/{n}" for n in names} & set(out.split())

    wait_for(gone, timeout=timeout, interval=0.5, message=f"test namespaces {names} deleted")


@pytest.fixture(scope="session")
def kube_test_namespaces(kube_cluster: KubeCluster) -> Iterator[list[str]]:
    """Names of the namespaces this session made; at the end, waits until all are gone."""
    names: list[str] = []
    yield names
    if names:
        wait_namespaces_gone(kube_cluster, names)


@pytest.fixture
def namespace(kube_cluster: KubeCluster, kube_test_namespaces: list[str]) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (custom resources first)."""
    with fresh_namespace(kube_cluster, kube_test_namespaces) as name:
        yield name


@contextlib.contextmanager
def fresh_namespace(kube_cluster: KubeCluster, made: list[str]) -> Iterator[str]:
    """A fresh namespace (its name added to `made`), deleted on exit (custom resources first)."""
    name = f"t-{secrets.token_hex(4)}"
    made.append(name)
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true"}},
        }
    )
    # Pods are refused until the ServiceAccount controller has made the default account.
    wait_for(
        lambda: kube_cluster.kubectl(
            "get", "serviceaccount", "default", "-o", "name", namespace=name
        ),
        timeout=30,
        message=f"default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        delete_namespace(kube_cluster, name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test that uses a cluster fixture as ``cluster``."""
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds missing control plane binaries before any test starts, outside test timeouts."""
    if os.environ.get("EC2_TERMINAL_KUBECONFIG") or session.config.option.collectonly:
        return
    if any(item.get_closest_marker("cluster") for item in session.items):
        subprocess.run([str(ROOT / "hack/k8s/build")], check=True)
