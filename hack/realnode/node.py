"""Starting, checking and stopping one cluster's real node (docs/realnode.md)."""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import apiobjects, cgroups, configs, containerd, hostnet, mounts, pki, procs
from .images import ARCHIVES
from .layout import (
    INGRESS_CLASS,
    NODE_LABEL,
    NODE_NAME,
    NODE_TAINT,
    ROOT,
    NodeError,
    NodeLayout,
    Slot,
    Tools,
)
from .procs import Proc


class Component(enum.Enum):
    """The node's processes, in start order (stopped in reverse)."""

    HOLDER = "holder"
    CONTAINERD = "containerd"
    FORWARDER = "forwarder"
    KUBELET = "kubelet"
    KUBE_PROXY = "kube-proxy"
    TRAEFIK = "traefik"


# Seconds each may take to stop after SIGTERM before it is killed.
GRACE = {Component.KUBELET: 10.0, Component.CONTAINERD: 10.0}


def log(msg: str, *args: object) -> None:
    print("==> " + (msg % args if args else msg), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class NodeState:
    """What a running node records in its state file."""

    slot: int
    api_port: int
    forward_port: int
    web_port: int
    ping_port: int
    processes: dict[Component, Proc]

    def to_json(self) -> dict[str, object]:
        return {
            "slot": self.slot,
            "api_port": self.api_port,
            "forward_port": self.forward_port,
            "web_port": self.web_port,
            "ping_port": self.ping_port,
            "processes": {c.value: p.to_json() for c, p in self.processes.items()},
        }


def load_state(layout: NodeLayout) -> dict[str, object]:
    try:
        data = json.loads(layout.state.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(layout: NodeLayout, data: dict[str, object]) -> None:
    tmp = layout.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(layout.state)


def recorded_processes(data: dict[str, object]) -> dict[Component, Proc]:
    raw = data.get("processes")
    found: dict[Component, Proc] = {}
    if isinstance(raw, dict):
        for c in Component:
            p = Proc.from_json(raw.get(c.value))
            if p:
                found[c] = p
    return found


@contextlib.contextmanager
def locked(layout: NodeLayout) -> Iterator[None]:
    """Serialises up and down of one node across processes."""
    layout.dir.mkdir(parents=True, exist_ok=True)
    with open(layout.dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def api_port(layout: NodeLayout) -> int:
    """The running cluster's API server port (from hack/cluster's state file)."""
    try:
        server = json.loads(layout.cluster_state.read_text())["server"]
        port = urlsplit(str(server)).port
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NodeError(f"no running cluster in {layout.cluster_dir} (hack/cluster up)") from exc
    if port is None:
        raise NodeError(f"no port in the cluster's server address {server}")
    return port


def http_ok(url: str) -> bool:
    try:
        # Only the http URLs this module builds reach here.
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ---------------------------------------------------------------- argv of each process


def in_node(holder: Proc, *argv: str) -> list[str]:
    """ARGV inside the node's mount and network namespaces (the holder's)."""
    return ["nsenter", f"--target={holder.pid}", "--mount", "--net", "--", *argv]


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", "realnode", *args]


def holder_argv(layout: NodeLayout, slot: Slot) -> list[str]:
    return [
        "nsenter",
        f"--net={slot.netns_path}",
        "--",
        "unshare",
        "--mount",
        "--propagation=slave",
        "--",
        *python_module(f"--dir={layout.cluster_dir}", "hold"),
    ]


def kubelet_argv(layout: NodeLayout, slot: Slot, tools: Tools) -> list[str]:
    label_key, label_value = NODE_LABEL
    return [
        tools.kubelet,
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubeconfig('kubelet')}",
        f"--root-dir={layout.run / 'kubelet'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={slot.node_ip}",
        f"--node-labels={label_key}={label_value}",
        "--v=1",
    ]


# ---------------------------------------------------------------- up


def prepare_files(layout: NodeLayout, slot: Slot, tools: Tools, forward_port: int) -> None:
    """Empties the run directory and writes every configuration file and certificate."""
    if layout.run.exists():
        shutil.rmtree(layout.run)
    for d in (layout.run, layout.cni_conf_dir, layout.logs):
        d.mkdir(parents=True, exist_ok=True)
    mounts.prepare_host(layout)
    layout.containerd_config.write_text(configs.containerd_toml(layout, tools))
    configs.write_json(layout.cni_conf_dir / "10-ec2t.conflist", configs.cni_conflist(layout, slot))
    configs.write_json(layout.kubelet_config, configs.kubelet_config(layout, slot))
    configs.write_json(layout.kube_proxy_config, configs.kube_proxy_config(layout, slot))
    pki.make_node_pki(layout, slot)
    server = f"https://{slot.host_ip}:{forward_port}"
    for user in ("kubelet", "kube-proxy"):
        pki.write_kubeconfig(
            layout.kubeconfig(user),
            server,
            layout.cluster_pki / "ca.crt",
            layout.pki / f"{user}.crt",
            layout.pki / f"{user}.key",
        )


def start(layout: NodeLayout, tools: Tools, timeout: float) -> NodeState:
    """Starts every component; the caller stops the node if this raises."""
    api = api_port(layout)
    with hostnet.registry_lock():
        slot = hostnet.allocate(layout)
        # Recorded before the registry lock is released, so no other node takes the slot as stale.
        save_state(layout, {"slot": slot.index})
        cgroups.create(slot.name)
        hostnet.create_network(slot)
    forward_port = procs.free_port(slot.host_ip)
    prepare_files(layout, slot, tools, forward_port)
    apiobjects.apply_manifests(layout, tools.kubectl)
    started: dict[Component, Proc] = {}
    state = NodeState(slot.index, api, forward_port, 0, 0, started)

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "hack"),
        mounts.HOST_MOUNT_NS: mounts.mount_namespace(),
    }

    def spawn(component: Component, argv: list[str]) -> Proc:
        proc = procs.spawn(argv, layout.logs / f"{component.value}.log", slot.name, layout.dir, env)
        started[component] = proc
        save_state(layout, state.to_json())
        return proc

    holder = spawn(Component.HOLDER, holder_argv(layout, slot))
    procs.wait_until(
        mounts.ready_marker(layout).exists, timeout, "the node's mount namespace", holder
    )
    ctrd = spawn(
        Component.CONTAINERD,
        in_node(holder, tools.containerd, f"--config={layout.containerd_config}"),
    )
    procs.wait_until(lambda: containerd.serving(layout, tools), timeout, "containerd", ctrd)
    for archive in ARCHIVES.values():
        containerd.import_archive(layout, tools, tools.images / archive)
    fwd = spawn(
        Component.FORWARDER,
        python_module("forward", slot.host_ip, str(forward_port), str(api)),
    )
    procs.wait_until(
        lambda: procs.listening(slot.host_ip, forward_port), timeout, "the API forwarder", fwd
    )
    apiobjects.kubectl(
        layout,
        tools.kubectl,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(apiobjects.api_endpoint_slice(slot.host_ip, forward_port)),
    )
    kubelet = spawn(Component.KUBELET, in_node(holder, *kubelet_argv(layout, slot, tools)))
    procs.wait_until(
        lambda: apiobjects.node_ready(layout, tools.kubectl), timeout, f"node {NODE_NAME}", kubelet
    )
    proxy = spawn(
        Component.KUBE_PROXY,
        in_node(holder, tools.kube_proxy, f"--config={layout.kube_proxy_config}"),
    )
    procs.wait_until(
        lambda: http_ok(f"http://{slot.node_ip}:10256/healthz"), timeout, "kube-proxy", proxy
    )
    web_port, ping_port = procs.free_port(), procs.free_port()
    while ping_port == web_port:
        ping_port = procs.free_port()
    token = apiobjects.traefik_token(layout, tools.kubectl)
    # The token is in this file only: owner-only, and never logged.
    configs.write_json(
        layout.traefik_config,
        configs.traefik_config(layout, f"https://127.0.0.1:{api}", token, web_port, ping_port),
        mode=0o600,
    )
    state = NodeState(slot.index, api, forward_port, web_port, ping_port, started)
    traefik = spawn(Component.TRAEFIK, [tools.traefik, f"--configFile={layout.traefik_config}"])
    procs.wait_until(
        lambda: http_ok(f"http://127.0.0.1:{ping_port}/ping"), timeout, "Traefik", traefik
    )
    return state


def up(layout: NodeLayout, tools: Tools, timeout: float) -> None:
    began = time.monotonic()
    layout.check()
    with locked(layout):
        if healthy(layout, tools):
            log("real node already up in %s", layout.dir)
            return
        stop(layout, tools)
        try:
            state = start(layout, tools, timeout)
        except BaseException:
            log("the real node failed to start; logs in %s; stopping what was started", layout.logs)
            stop(layout, tools)
            raise
    log(
        "real node %s up in %.1fs: ingress http://127.0.0.1:%d/",
        NODE_NAME,
        time.monotonic() - began,
        state.web_port,
    )


# ---------------------------------------------------------------- down


def stop(layout: NodeLayout, tools: Tools | None) -> None:
    """Stops the node and removes what it made: pods, processes, cgroup, namespace, slot, Node."""
    data = load_state(layout)
    slot_index = data.get("slot")
    running = recorded_processes(data)
    kubelet = running.get(Component.KUBELET)
    if tools is not None and kubelet is not None and kubelet.alive():
        apiobjects.drain(layout, tools.kubectl)
    for component in reversed(Component):
        if component in running and component is not Component.HOLDER:
            procs.terminate(running[component], GRACE.get(component, 5.0))
    if isinstance(slot_index, int):
        with hostnet.registry_lock():
            hostnet.release(Slot(slot_index))
    if tools is not None and layout.admin_kubeconfig.exists() and data:
        apiobjects.delete_node(layout, tools.kubectl)
    with contextlib.suppress(FileNotFoundError):
        layout.state.unlink()
    if layout.run.exists():
        shutil.rmtree(layout.run)


def down(layout: NodeLayout, tools: Tools | None) -> None:
    with locked(layout):
        stop(layout, tools)
    log("real node down (%s)", layout.dir)


# ---------------------------------------------------------------- status


def status(layout: NodeLayout, tools: Tools) -> dict[Component, tuple[bool, str]]:
    data = load_state(layout)
    running = recorded_processes(data)
    slot_index = data.get("slot")
    result: dict[Component, tuple[bool, str]] = {}
    for component in Component:
        proc = running.get(component)
        if proc is None:
            result[component] = (False, "not started")
        elif not proc.alive():
            result[component] = (False, f"exited (log: {proc.log})")
        else:
            result[component] = (True, f"pid {proc.pid}")
    if not isinstance(slot_index, int) or not all(ok for ok, _ in result.values()):
        return result
    slot = Slot(slot_index)
    checks: dict[Component, Callable[[], bool]] = {
        Component.CONTAINERD: lambda: containerd.serving(layout, tools),
        Component.KUBELET: lambda: apiobjects.node_ready(layout, tools.kubectl),
        Component.KUBE_PROXY: lambda: http_ok(f"http://{slot.node_ip}:10256/healthz"),
        Component.TRAEFIK: lambda: http_ok(f"http://127.0.0.1:{data.get('ping_port')}/ping"),
    }
    for component, check in checks.items():
        if not check():
            result[component] = (False, f"{result[component][1]}: not healthy")
    return result


def healthy(layout: NodeLayout, tools: Tools) -> bool:
    return all(ok for ok, _ in status(layout, tools).values())


def info(layout: NodeLayout, tools: Tools) -> dict[str, object]:
    """What tests and scripts need to use the running node."""
    data = load_state(layout)
    slot_index = data.get("slot")
    if not isinstance(slot_index, int):
        raise NodeError(f"no real node in {layout.dir} (hack/real-node up)")
    slot = Slot(slot_index)
    key, value, effect = NODE_TAINT
    return {
        "node": NODE_NAME,
        "label": dict([NODE_LABEL]),
        "taint": {"key": key, "value": value, "effect": effect},
        "ingressClass": INGRESS_CLASS,
        "ingressURL": f"http://127.0.0.1:{data.get('web_port')}",
        "netns": slot.name,
        "nodeIP": slot.node_ip,
        "hostIP": slot.host_ip,
        "podCIDR": str(slot.pod_cidr),
        "containerdSocket": str(layout.containerd_socket),
        "ctr": containerd.ctr_argv(layout, tools),
        "images": {name: str(tools.images / archive) for name, archive in ARCHIVES.items()},
        "logs": str(layout.logs),
    }
