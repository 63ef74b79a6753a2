"""Starting, checking and stopping one cluster's real node (docs/realnode.md)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from hack.localcluster import control
from hack.localcluster.layout import ROOT, locked, log
from hack.localcluster.state import Component as ClusterComponent
from hack.localcluster.state import Process
from hack.localcluster.state import State as ClusterState
from hack.realnode import apiobjects, cgroups, configs, containerd, hostnet, mounts, pki, procs
from hack.realnode.images import ARCHIVES
from hack.realnode.layout import (
    INGRESS_CLASS,
    NODE_LABEL,
    NODE_NAME,
    NODE_TAINT,
    NodeError,
    NodeLayout,
    Slot,
    Tools,
)
from hack.realnode.state import Component, NodeState

# Seconds each may take to stop after SIGTERM before it is killed.
GRACE = {Component.KUBELET: 10.0, Component.CONTAINERD: 10.0}


def api_port(layout: NodeLayout) -> int:
    """The running cluster's API server port (hack/cluster's state file)."""
    state = ClusterState.load(layout.cluster)
    if state is None:
        raise NodeError(f"no running cluster in {layout.cluster.dir} (hack/cluster up)")
    return state.ports[ClusterComponent.APISERVER]


def http_ok(url: str) -> bool:
    try:
        # Only the http URLs this module builds reach here.
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ---------------------------------------------------------------- argv of each process


def in_node(holder: Process, *argv: str) -> list[str]:
    """ARGV inside the node's mount and network namespaces (the holder's)."""
    return ["nsenter", f"--target={holder.pid}", "--mount", "--net", "--", *argv]


def python_module(*args: str) -> list[str]:
    """This package's command (hack/real-node) as a process of the node."""
    return [sys.executable, "-P", "-m", "hack.realnode", *args]


def holder_argv(layout: NodeLayout, slot: Slot) -> list[str]:
    return [
        "nsenter",
        f"--net={slot.netns_path}",
        "--",
        "unshare",
        "--mount",
        "--propagation=slave",
        "--",
        *python_module(f"--dir={layout.cluster.dir}", "hold"),
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
    pki.write_kubeconfigs(layout, f"https://{slot.host_ip}:{forward_port}")


def start(layout: NodeLayout, tools: Tools, timeout: float) -> NodeState:
    """Starts every component; the caller stops the node if this raises."""
    api = api_port(layout)
    with hostnet.registry_lock():
        slot = hostnet.allocate(layout)
        state = NodeState(slot=slot.index, api_port=api)
        # Recorded before the registry lock is released, so no other node takes the slot as stale.
        state.save(layout.state)
        cgroups.create(slot.name)
        hostnet.create_network(slot)
    state.forward_port = procs.free_port(slot.host_ip)
    prepare_files(layout, slot, tools, state.forward_port)
    apiobjects.apply_manifests(layout, tools.kubectl)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        mounts.HOST_MOUNT_NS: mounts.mount_namespace(),
    }

    def spawn(component: Component, argv: list[str]) -> Process:
        log_file = layout.logs / f"{component.value}.log"
        proc = procs.spawn(argv, log_file, slot.name, layout.dir, env)
        state.processes[component] = proc
        state.save(layout.state)
        return proc

    holder = spawn(Component.HOLDER, holder_argv(layout, slot))
    procs.wait_for(
        mounts.ready_marker(layout).exists, timeout, "the node's mount namespace", holder
    )
    ctrd = spawn(
        Component.CONTAINERD,
        in_node(holder, tools.containerd, f"--config={layout.containerd_config}"),
    )
    procs.wait_for(lambda: containerd.serving(layout, tools), timeout, "containerd", ctrd)
    for archive in ARCHIVES.values():
        containerd.import_archive(layout, tools, tools.images / archive)
    forward = state.forward_port
    fwd = spawn(Component.FORWARDER, python_module("forward", slot.host_ip, str(forward), str(api)))
    procs.wait_for(
        lambda: procs.listening(slot.host_ip, forward), timeout, "the API forwarder", fwd
    )
    slice_ = apiobjects.api_endpoint_slice(slot.host_ip, forward)
    apiobjects.kubectl(layout, tools.kubectl, "apply", "-f", "-", stdin=json.dumps(slice_))
    kubelet = spawn(Component.KUBELET, in_node(holder, *kubelet_argv(layout, slot, tools)))
    procs.wait_for(
        lambda: apiobjects.node_ready(layout, tools.kubectl), timeout, f"node {NODE_NAME}", kubelet
    )
    proxy = spawn(
        Component.KUBE_PROXY,
        in_node(holder, tools.kube_proxy, f"--config={layout.kube_proxy_config}"),
    )
    procs.wait_for(
        lambda: http_ok(f"http://{slot.node_ip}:10256/healthz"), timeout, "kube-proxy", proxy
    )
    state.web_port = procs.free_port("127.0.0.1")
    state.ping_port = procs.free_port("127.0.0.1")
    while state.ping_port == state.web_port:
        state.ping_port = procs.free_port("127.0.0.1")
    token = apiobjects.traefik_token(layout, tools.kubectl)
    # The token is in this file only: owner-only, and never logged.
    traefik_config = configs.traefik_config(
        layout, f"https://127.0.0.1:{api}", token, state.web_port, state.ping_port
    )
    configs.write_json(layout.traefik_config, traefik_config, mode=0o600)
    traefik = spawn(Component.TRAEFIK, [tools.traefik, f"--configFile={layout.traefik_config}"])
    ping = f"http://127.0.0.1:{state.ping_port}/ping"
    procs.wait_for(lambda: http_ok(ping), timeout, "Traefik", traefik)
    return state


def up(layout: NodeLayout, tools: Tools, timeout: float) -> None:
    began = time.monotonic()
    layout.check()
    layout.dir.mkdir(parents=True, exist_ok=True)
    with locked(layout.own):
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
    state = NodeState.load(layout.state)
    if state is not None:
        running = state.processes
        kubelet = running.get(Component.KUBELET)
        if tools is not None and kubelet is not None and kubelet.alive():
            apiobjects.drain(layout, tools.kubectl)
        for component in reversed(Component):
            proc = running.get(component)
            # The holder and the containers go with the cgroup, below.
            if proc is not None and component is not Component.HOLDER and proc.alive():
                control.terminate(component.value, proc, GRACE.get(component, 5.0))
        if tools is not None and layout.cluster.admin_kubeconfig.exists():
            apiobjects.delete_node(layout, tools.kubectl)
    with hostnet.registry_lock():
        # The recorded slot, and one allocated by a start that failed before recording it.
        hostnet.release_own(layout, {state.slot} if state is not None else set())
    with contextlib.suppress(FileNotFoundError):
        layout.state.unlink()
    if layout.run.exists():
        shutil.rmtree(layout.run)


def down(layout: NodeLayout, tools: Tools | None) -> None:
    with locked(layout.own):
        stop(layout, tools)
    log("real node down (%s)", layout.dir)


# ---------------------------------------------------------------- status


def status(layout: NodeLayout, tools: Tools) -> dict[Component, tuple[bool, str]]:
    """Each component: up and healthy or not, and a line saying why."""
    state = NodeState.load(layout.state)
    result: dict[Component, tuple[bool, str]] = {}
    for component in Component:
        proc = state.processes.get(component) if state is not None else None
        if proc is None:
            result[component] = (False, "not started")
        elif not proc.alive():
            result[component] = (False, f"exited (log: {proc.log})")
        else:
            result[component] = (True, f"pid {proc.pid}")
    if state is None or not all(ok for ok, _ in result.values()):
        return result
    slot = Slot(state.slot)
    checks: dict[Component, Callable[[], bool]] = {
        Component.CONTAINERD: lambda: containerd.serving(layout, tools),
        Component.KUBELET: lambda: apiobjects.node_ready(layout, tools.kubectl),
        Component.KUBE_PROXY: lambda: http_ok(f"http://{slot.node_ip}:10256/healthz"),
        Component.TRAEFIK: lambda: http_ok(f"http://127.0.0.1:{state.ping_port}/ping"),
    }
    for component, check in checks.items():
        if not check():
            result[component] = (False, f"{result[component][1]}: not healthy")
    return result


def healthy(layout: NodeLayout, tools: Tools) -> bool:
    return all(ok for ok, _ in status(layout, tools).values())


def info(layout: NodeLayout, tools: Tools) -> dict[str, object]:
    """What tests and scripts need to use the running node."""
    state = NodeState.load(layout.state)
    if state is None:
        raise NodeError(f"no real node in {layout.dir} (hack/real-node up)")
    slot = Slot(state.slot)
    key, value, effect = NODE_TAINT
    return {
        "node": NODE_NAME,
        "label": dict([NODE_LABEL]),
        "taint": {"key": key, "value": value, "effect": effect},
        "ingressClass": INGRESS_CLASS,
        "ingressURL": f"http://127.0.0.1:{state.web_port}",
        "netns": slot.name,
        "nodeIP": slot.node_ip,
        "hostIP": slot.host_ip,
        "podCIDR": str(slot.pod_cidr),
        "containerdSocket": str(layout.containerd_socket),
        "ctr": containerd.ctr_argv(layout, tools),
        "images": {name: str(tools.images / archive) for name, archive in ARCHIVES.items()},
        "logs": str(layout.logs),
    }
