"""Runs a local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler, kwok)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EC2_TERMINAL_CACHE") or Path.home() / ".cache/ec2-terminal")
MARKER_NAMESPACE = "kube-system"
MARKER_NAME = "ec2-terminal-test-cluster"
NODE_NAMES = ("kwok-node-0", "kwok-node-1")
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# Start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BINARY_ENV = {
    "etcd": "EC2_TERMINAL_ETCD",
    "kube-apiserver": "EC2_TERMINAL_KUBE_APISERVER",
    "kube-controller-manager": "EC2_TERMINAL_KUBE_CONTROLLER_MANAGER",
    "kube-scheduler": "EC2_TERMINAL_KUBE_SCHEDULER",
    "kwok": "EC2_TERMINAL_KWOK",
    "kwok-stages": "EC2_TERMINAL_KWOK_STAGES",
    "kubectl": "EC2_TERMINAL_KUBECTL",
    "helm": "EC2_TERMINAL_HELM",
}


class ClusterError(Exception):
    """A component failed to start or stop; the message says which and where its log is."""


class ComponentExited(ClusterError):
    """A component exited while starting; ``port_clash`` when its port was taken meanwhile."""

    def __init__(self, message: str, port_clash: bool) -> None:
        super().__init__(message)
        self.port_clash = port_clash


def log(msg: str, *args: object) -> None:
    print("==> " + (msg % args if args else msg), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Layout:
    """Where one cluster instance keeps its files."""

    dir: Path

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd-data"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubeconfig(self, user: str) -> Path:
        return self.dir / f"{user}.kubeconfig"

    @property
    def lock(self) -> Path:
        return self.dir.parent / f".{self.dir.name}.lock"


def default_dir() -> Path:
    return Path(os.environ.get("EC2_TERMINAL_CLUSTER_DIR") or CACHE / "cluster/run").resolve()


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    """Serialises up/down on one state directory across processes."""
    layout.dir.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- binaries


def binaries(build: bool) -> dict[str, str]:
    """Paths of every binary: from EC2_TERMINAL_* variables, else the cache (built if asked)."""
    script = ROOT / "hack/k8s/build"
    if build:
        subprocess.run([str(script)], check=True, stdout=sys.stderr)
    out = subprocess.run(
        [str(script), "--print-env"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    paths = {name: env[var] for name, var in BINARY_ENV.items()}
    missing = [
        p for n, p in paths.items() if not os.access(p, os.R_OK if n == "kwok-stages" else os.X_OK)
    ]
    if missing:
        raise ClusterError(f"missing binaries (run hack/k8s/build): {', '.join(missing)}")
    return paths


# ---------------------------------------------------------------- certificates


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(pki: Path, name: str, subject: str, usage: str, sans: str = "") -> None:
    """Issues NAME.crt/NAME.key signed by the cluster CA (EC P-256: quick to generate)."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
    ext.append(f"extendedKeyUsage={usage}")
    if sans:
        ext.append(f"subjectAltName={sans}")
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "365",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


def certs_valid(pki: Path) -> bool:
    """True when every file exists and the CA and leaves are good for at least another week."""
    names = ("ca", "apiserver", "serving", "admin", "controller-manager", "scheduler", "kwok")
    if not all((pki / f"{n}.crt").exists() and (pki / f"{n}.key").exists() for n in names):
        return False
    if not (pki / "sa.key").exists() or not (pki / "sa.pub").exists():
        return False
    for n in names:
        check = [
            "openssl",
            "x509",
            "-checkend",
            str(7 * 86400),
            "-noout",
            "-in",
            str(pki / f"{n}.crt"),
        ]
        if subprocess.run(check, capture_output=True).returncode != 0:
            return False
    return True


def make_pki(pki: Path) -> None:
    """A CA, serving certs, one client cert per component, and the service-account key pair."""
    if certs_valid(pki):
        return
    log("generating certificates in %s", pki)
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True, mode=0o700)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=ec2-terminal-test-ca",
        "-days",
        "3650",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    local = "IP:127.0.0.1,DNS:localhost"
    kube_sans = (
        f"{local},IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    )
    issue(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", kube_sans)
    issue(pki, "serving", "/CN=localhost", "serverAuth", local)
    issue(pki, "admin", "/O=system:masters/CN=ec2-terminal-admin", "clientAuth")
    issue(pki, "controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    issue(pki, "scheduler", "/CN=system:kube-scheduler", "clientAuth")
    # kwok updates node and pod status for many nodes, which the Node authorizer would limit.
    issue(pki, "kwok", "/O=system:masters/CN=kwok", "clientAuth")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    # Paths, not inline data: the keys stay in one place with mode 0600.
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: ec2-terminal-test
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: ec2-terminal-test
  context: {{cluster: ec2-terminal-test, user: {user}}}
current-context: ec2-terminal-test
"""
    path.write_text(text)
    path.chmod(0o600)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    fixed = os.environ.get("EC2_TERMINAL_APISERVER_PORT")
    names = (
        "etcd",
        "etcd-peer",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    )
    for name in names:
        port = int(fixed) if name == "kube-apiserver" and fixed else free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of PID, so a recycled PID is never mistaken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if fields[0] != "Z" else None


def alive(entry: dict[str, object]) -> bool:
    pid = entry.get("pid")
    return isinstance(pid, int) and proc_start_time(pid) == entry.get("start")


def spawn(layout: Layout, name: str, argv: list[str]) -> dict[str, object]:
    layout.logs.mkdir(parents=True, exist_ok=True)
    logfile = layout.logs / f"{name}.log"
    with open(logfile, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd=layout.dir,
        )
    return {"pid": proc.pid, "start": proc_start_time(proc.pid), "log": str(logfile)}


def load_state(layout: Layout) -> dict[str, object]:
    try:
        data = json.loads(layout.state.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(layout: Layout, state: dict[str, object]) -> None:
    tmp = layout.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(layout.state)


def listening(port: int) -> bool:
    """True if anything listens on 127.0.0.1:PORT (or on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- health


def get(url: str, ctx: ssl.SSLContext | None, timeout: float = 2.0) -> tuple[int, str]:
    try:
        # Only the http(s) URLs health_url builds reach here.
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return 0, str(exc)


def tls_context(pki: Path, client: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client:
        ctx.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    return ctx


def health_url(name: str, ports: dict[str, int]) -> str:
    port = ports[name]
    return {
        "etcd": f"http://127.0.0.1:{port}/health",
        "kube-apiserver": f"https://127.0.0.1:{port}/readyz",
        "kube-controller-manager": f"https://127.0.0.1:{port}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{port}/healthz",
        "kwok": f"http://127.0.0.1:{port}/healthz",
    }[name]


def healthy(layout: Layout, name: str, ports: dict[str, int]) -> tuple[bool, str]:
    url = health_url(name, ports)
    ctx = tls_context(layout.pki, "admin") if url.startswith("https") else None
    status, body = get(url, ctx)
    if name == "etcd":
        return status == 200 and '"health":"true"' in body.replace(" ", ""), body.strip()[:200]
    return status == 200, body.strip()[:200]


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} not ready after {timeout:.0f}s\n{on_fail()}")
        time.sleep(0.2)


def tail(path: str | Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------- commands


def component_argv(
    name: str, layout: Layout, bins: dict[str, str], ports: dict[str, int]
) -> list[str]:
    pki = layout.pki
    p = ports
    if name == "etcd":
        peer = f"http://127.0.0.1:{p['etcd-peer']}"
        client = f"http://127.0.0.1:{p['etcd']}"
        return [
            bins["etcd"],
            "--name=default",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            # Test data only: durability across power loss does not matter, speed does.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            bins["kube-apiserver"],
            f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p[name]}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--tls-min-version=VersionTLS12",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={ISSUER}",
            f"--api-audiences={ISSUER}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The endpoint reconciler would publish 127.0.0.1, which Endpoints validation refuses.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={layout.dir / 'apiserver-certs'}",
            "--profiling=false",
        ]
    if name in ("kube-controller-manager", "kube-scheduler"):
        kc = layout.kubeconfig(name.removeprefix("kube-"))
        shared = [
            bins[name],
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            # No front proxy here: don't look up (and keep warning about) its request-header CA.
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1",
            f"--secure-port={p[name]}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false",
            "--profiling=false",
        ]
        if name == "kube-scheduler":
            return shared
        return [
            *shared,
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={POD_CIDR}",
            "--allocate-node-cidrs=false",
        ]
    if name == "kwok":
        return [
            bins["kwok"],
            f"--kubeconfig={layout.kubeconfig('kwok')}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.1/16",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{p['kwok']}",
            f"--config={bins['kwok-stages']}",
        ]
    raise ValueError(name)


def node_manifest(name: str) -> dict[str, object]:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "status": {
            "allocatable": resources,
            "capacity": resources,
        },
    }


def kubectl(layout: Layout, bins: dict[str, str], *args: str, stdin: str | None = None) -> str:
    argv = [bins["kubectl"], f"--kubeconfig={layout.admin_kubeconfig}", *args]
    res = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ClusterError(f"kubectl {shlex.join(args)}: {res.stderr.strip()}")
    return res.stdout


def bootstrap(layout: Layout, bins: dict[str, str], ports: dict[str, int], timeout: float) -> None:
    """Creates the fake nodes and the marker ConfigMap, then waits for what tests rely on."""
    items: list[dict[str, object]] = [node_manifest(n) for n in NODE_NAMES]
    items.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": MARKER_NAME, "namespace": MARKER_NAMESPACE},
            "data": {"stateDir": str(layout.dir), "createdBy": "hack/cluster"},
        }
    )
    kubectl(
        layout,
        bins,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    nodes = [f"node/{n}" for n in NODE_NAMES]
    kubectl(layout, bins, "wait", "--for=condition=Ready", f"--timeout={int(timeout)}s", *nodes)

    def default_sa() -> bool:
        try:
            kubectl(layout, bins, "get", "serviceaccount", "default", "-n", "default", "-o", "name")
        except ClusterError:
            return False
        return True

    wait_until(
        default_sa,
        timeout,
        "default ServiceAccount",
        lambda: tail(layout.logs / "kube-controller-manager.log"),
    )


def status_of(layout: Layout) -> dict[str, tuple[bool, str]]:
    state = load_state(layout)
    procs = state.get("processes")
    ports = state.get("ports")
    result: dict[str, tuple[bool, str]] = {}
    for name in COMPONENTS:
        if not isinstance(procs, dict) or not isinstance(ports, dict) or name not in procs:
            result[name] = (False, "not started")
            continue
        if not alive(procs[name]):
            result[name] = (False, f"exited (log: {procs[name].get('log')})")
            continue
        ok, detail = healthy(layout, name, ports)
        result[name] = (
            ok,
            f"pid {procs[name]['pid']} port {ports[name]}: {'ok' if ok else detail}",
        )
    return result


def stop(layout: Layout, grace: float = 15.0) -> None:
    """Stops every recorded process (SIGTERM, then SIGKILL); waits until their ports are closed."""
    state = load_state(layout)
    procs = state.get("processes") if isinstance(state.get("processes"), dict) else {}
    ports = state.get("ports") if isinstance(state.get("ports"), dict) else {}
    assert isinstance(procs, dict)
    assert isinstance(ports, dict)
    for name in reversed(COMPONENTS):
        entry = procs.get(name)
        if not isinstance(entry, dict) or not alive(entry):
            continue
        pid = int(entry["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(entry) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(entry):
            log("%s (pid %d) ignored SIGTERM; killing it", name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while alive(entry):
                time.sleep(0.05)
    # Our processes are gone and have no children, so their sockets are closed; a port still
    # listening now belongs to someone else (say, a port taken while we were starting).
    deadline = time.monotonic() + 5
    busy = [int(p) for p in ports.values() if listening(int(p))]
    while busy and time.monotonic() < deadline:
        time.sleep(0.1)
        busy = [p for p in busy if listening(p)]
    if busy:
        log("ports %s are in use by other processes", busy)
    with contextlib.suppress(FileNotFoundError):
        layout.state.unlink()
    shutil.rmtree(layout.etcd_data, ignore_errors=True)


def wait_healthy(
    layout: Layout, name: str, entry: dict[str, object], ports: dict[str, int], timeout: float
) -> None:
    """Waits for NAME's health endpoint; fails early, with its log, if the process exits."""
    log_path = str(entry["log"])

    def ready() -> bool:
        if not alive(entry):
            last = tail(log_path)
            raise ComponentExited(f"{name} exited:\n{last}", "address already in use" in last)
        return healthy(layout, name, ports)[0]

    wait_until(ready, timeout, name, lambda: tail(log_path))


def start_components(layout: Layout, bins: dict[str, str], timeout: float) -> None:
    """Starts every component on fresh ports and waits until the cluster is usable."""
    ports = pick_ports()
    server = f"https://127.0.0.1:{ports['kube-apiserver']}"
    for user in ("admin", "controller-manager", "scheduler", "kwok"):
        write_kubeconfig(layout.kubeconfig(user), server, layout.pki, user)
    shutil.rmtree(layout.etcd_data, ignore_errors=True)
    state: dict[str, object] = {"ports": ports, "server": server, "processes": {}}
    procs: dict[str, object] = {}
    state["processes"] = procs
    try:
        for group in (
            ("etcd",),
            ("kube-apiserver",),
            ("kube-controller-manager", "kube-scheduler", "kwok"),
        ):
            for name in group:
                procs[name] = spawn(layout, name, component_argv(name, layout, bins, ports))
                save_state(layout, state)
            for name in group:
                entry = procs[name]
                assert isinstance(entry, dict)
                wait_healthy(layout, name, entry, ports, timeout)
        bootstrap(layout, bins, ports, timeout)
    except BaseException:
        log("cluster failed to start; logs in %s; stopping what was started", layout.logs)
        stop(layout)
        raise


def cmd_up(layout: Layout, timeout: float, build: bool) -> int:
    started = time.monotonic()
    with locked(layout):
        current = status_of(layout)
        if all(ok for ok, _ in current.values()):
            log("cluster already up in %s", layout.dir)
            return 0
        stop(layout)  # whatever is left of an earlier, broken run
        bins = binaries(build)
        layout.dir.mkdir(parents=True, exist_ok=True)
        layout.dir.chmod(0o700)
        make_pki(layout.pki)
        for attempt in (1, 2):
            try:
                start_components(layout, bins, timeout)
                break
            except ComponentExited as exc:
                # A free port probed here can be taken by another process before the component
                # binds it; one retry on fresh ports makes that race harmless.
                if attempt == 2 or not exc.port_clash:
                    raise
                log("%s; retrying on other ports", str(exc).splitlines()[0])
    log(
        "cluster up in %.1fs: export KUBECONFIG=%s",
        time.monotonic() - started,
        layout.admin_kubeconfig,
    )
    return 0


def cmd_down(layout: Layout, purge: bool) -> int:
    with locked(layout):
        stop(layout)
        if purge:
            shutil.rmtree(layout.dir, ignore_errors=True)
    log("cluster down (%s)", layout.dir)
    return 0


def cmd_status(layout: Layout) -> int:
    current = status_of(layout)
    for name, (ok, detail) in current.items():
        print(f"{name:25} {'up' if ok else 'DOWN':5} {detail}")
    return 0 if all(ok for ok, _ in current.values()) else 1


def cmd_env(layout: Layout) -> int:
    bins = binaries(build=False)
    print(f"export KUBECONFIG={shlex.quote(str(layout.admin_kubeconfig))}")
    print(f"export EC2_TERMINAL_CLUSTER_DIR={shlex.quote(str(layout.dir))}")
    for name, var in BINARY_ENV.items():
        print(f"export {var}={shlex.quote(bins[name])}")
    # kubectl and helm of the matching minor first on PATH, ahead of any system kubectl.
    tools = sorted({str(Path(bins["kubectl"]).parent), str(Path(bins["helm"]).parent)})
    print(f'export PATH={shlex.quote(":".join(tools))}:"$PATH"')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/cluster", description=__doc__)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="state directory (default: $EC2_TERMINAL_CLUSTER_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster (no-op when it is already up and healthy)")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for each component")
    up.add_argument(
        "--no-build", action="store_true", help="fail instead of building missing binaries"
    )
    down = sub.add_parser("down", help="stop every component, wait until their ports are closed")
    down.add_argument(
        "--purge", action="store_true", help="also delete the state directory (certificates, logs)"
    )
    sub.add_parser("status", help="health of each component; exit status 0 only when all are up")
    sub.add_parser("env", help="print shell exports (KUBECONFIG and binary paths)")
    args = parser.parse_args(argv)
    layout = Layout((args.dir or default_dir()).resolve())
    try:
        if args.command == "up":
            return cmd_up(layout, args.timeout, build=not args.no_build)
        if args.command == "down":
            return cmd_down(layout, args.purge)
        if args.command == "status":
            return cmd_status(layout)
        return cmd_env(layout)
    except (ClusterError, subprocess.CalledProcessError) as exc:
        print(f"hack/cluster {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
