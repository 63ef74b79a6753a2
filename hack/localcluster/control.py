"""Starting, checking and stopping the cluster's processes."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hack.localcluster import components, pki
from hack.localcluster.components import Binaries
from hack.localcluster.errors import ClusterError, ComponentExited
from hack.localcluster.layout import ROOT, Layout, log
from hack.localcluster.state import Component, Ports, Process, State

MARKER_NAMESPACE = "kube-system"
MARKER_NAME = "ec2-terminal-test-cluster"
NODE_NAMES = ("kwok-node-0", "kwok-node-1")
# Started in groups, each waited for before the next.
START_GROUPS = (
    (Component.ETCD,),
    (Component.APISERVER,),
    (Component.CONTROLLER_MANAGER, Component.SCHEDULER, Component.KWOK),
)
REAL_NODE = ROOT / "hack/real-node"
# Kubeconfigs written at every start: one per client certificate.
USERS = ("admin", "controller-manager", "scheduler", "kwok")


def spawn(layout: Layout, component: Component, argv: list[str]) -> Process:
    """Starts a component in its own session, its output appended to its log."""
    return start_logged(argv, layout.logs / f"{component.value}.log", layout.dir)


def start_logged(
    argv: list[str],
    logfile: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Process:
    """Starts ARGV in its own session, its output appended to LOGFILE (hack/real-node's too)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            preexec_fn=preexec_fn,
        )
    return Process.of(proc.pid, logfile)


def listening(port: int) -> bool:
    """True if anything listens on 127.0.0.1:PORT (or on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str]
) -> None:
    """Polls `check` until it is true; a ClusterError with `on_fail()` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} not ready after {timeout:.0f}s\n{on_fail()}")
        time.sleep(0.2)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log ('' when unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def kubectl(
    layout: Layout, bins: Binaries, *args: str, stdin: str | None = None, timeout: float = 60
) -> str:
    """kubectl as the cluster's admin; a ClusterError with its stderr when it fails."""
    argv = [bins["kubectl"], f"--kubeconfig={layout.admin_kubeconfig}", *args]
    res = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise ClusterError(f"kubectl {shlex.join(args)}: {res.stderr.strip()}")
    return res.stdout


def node_manifest(name: str) -> dict[str, Any]:
    """A fake node that kwok manages."""
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
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
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def bootstrap(layout: Layout, bins: Binaries, timeout: float) -> None:
    """Creates the fake nodes and the marker ConfigMap, then waits for what tests rely on."""
    items = [node_manifest(n) for n in NODE_NAMES]
    items.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": MARKER_NAME, "namespace": MARKER_NAMESPACE},
            "data": {"stateDir": str(layout.dir), "createdBy": "hack/cluster"},
        }
    )
    listing = {"apiVersion": "v1", "kind": "List", "items": items}
    kubectl(layout, bins, "apply", "-f", "-", stdin=json.dumps(listing))
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
        lambda: tail(layout.logs / f"{Component.CONTROLLER_MANAGER.value}.log"),
    )


def status_of(layout: Layout) -> dict[Component, tuple[bool, str]]:
    """Each component: up and healthy or not, and a line saying why."""
    state = State.load(layout)
    result: dict[Component, tuple[bool, str]] = {}
    for component in Component:
        proc = state.processes.get(component) if state is not None else None
        if state is None or proc is None:
            result[component] = (False, "not started")
            continue
        if not proc.alive():
            result[component] = (False, f"exited (log: {proc.log})")
            continue
        ok, detail = components.healthy(layout, component, state.ports)
        port = state.ports[component]
        result[component] = (ok, f"pid {proc.pid} port {port}: {'ok' if ok else detail}")
    return result


def stop_real_node(layout: Layout) -> None:
    """Stops the real node attached to this cluster, if any (hack/real-node, docs/realnode.md)."""
    if (layout.dir / "realnode/state.json").exists():
        res = subprocess.run([str(REAL_NODE), f"--dir={layout.dir}", "down"], check=False)
        if res.returncode != 0:
            log("hack/real-node down failed (exit %d); stopping the cluster anyway", res.returncode)


def stop(layout: Layout, grace: float = 15.0) -> None:
    """Stops every recorded process (SIGTERM, then SIGKILL); waits until their ports are closed."""
    stop_real_node(layout)
    state = State.load(layout)
    if state is not None:
        for component in reversed(Component):
            proc = state.processes.get(component)
            if proc is not None and proc.alive():
                terminate(component.value, proc, grace)
        # Our processes are gone and have no children, so their sockets are closed; a port
        # still listening now belongs to someone else (say, one taken while we were starting).
        deadline = time.monotonic() + 5
        busy = [p for p in state.ports.all() if listening(p)]
        while busy and time.monotonic() < deadline:
            time.sleep(0.1)
            busy = [p for p in busy if listening(p)]
        if busy:
            log("ports %s are in use by other processes", busy)
    with contextlib.suppress(FileNotFoundError):
        layout.state.unlink()
    shutil.rmtree(layout.etcd_data, ignore_errors=True)


def terminate(name: str, proc: Process, grace: float) -> None:
    """SIGTERM, then SIGKILL to its process group after GRACE seconds; returns once it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.alive():
        log("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        while proc.alive():
            time.sleep(0.05)


def restart(
    layout: Layout, bins: Binaries, component: Component, kill: bool, timeout: float
) -> None:
    """Stops one component (SIGKILL with `kill`, else SIGTERM) and starts it again on its ports.

    etcd keeps its data: this is the restart of a live cluster, not a fresh one.
    """
    state = State.load(layout)
    if state is None or component not in state.processes:
        raise ClusterError(f"{component.value} is not running in {layout.dir}: run `up` first")
    proc = state.processes[component]
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        while proc.alive():
            time.sleep(0.05)
    elif proc.alive():
        terminate(component.value, proc, grace=15.0)
    port = state.ports[component]
    wait_until(
        lambda: not listening(port),
        15,
        f"{component.value}'s port {port} to close",
        lambda: "another process holds it",
    )
    argv = components.argv(component, layout, bins, state.ports)
    state.processes[component] = spawn(layout, component, argv)
    state.save(layout)
    wait_healthy(layout, component, state.processes[component], state.ports, timeout)


def wait_healthy(
    layout: Layout, component: Component, proc: Process, ports: Ports, timeout: float
) -> None:
    """Waits for the component's health endpoint; fails early, with its log, if it exits."""

    def ready() -> bool:
        if not proc.alive():
            last = tail(proc.log)
            raise ComponentExited(
                f"{component.value} exited:\n{last}", "address already in use" in last
            )
        return components.healthy(layout, component, ports)[0]

    wait_until(ready, timeout, component.value, lambda: tail(proc.log))


def start(layout: Layout, bins: Binaries, timeout: float) -> None:
    """Starts every component on fresh ports and waits until the cluster is usable."""
    fixed = os.environ.get("EC2_TERMINAL_APISERVER_PORT")
    ports = Ports.pick(apiserver=int(fixed) if fixed else None)
    server = f"https://127.0.0.1:{ports[Component.APISERVER]}"
    for user in USERS:
        pki.write_kubeconfig(layout.kubeconfig(user), server, layout.pki, user)
    shutil.rmtree(layout.etcd_data, ignore_errors=True)
    state = State(ports=ports, server=server, processes={})
    try:
        for group in START_GROUPS:
            for component in group:
                argv = components.argv(component, layout, bins, ports)
                state.processes[component] = spawn(layout, component, argv)
                state.save(layout)
            for component in group:
                wait_healthy(layout, component, state.processes[component], ports, timeout)
        bootstrap(layout, bins, timeout)
    except BaseException:
        log("cluster failed to start; logs in %s; stopping what was started", layout.logs)
        stop(layout)
        raise
