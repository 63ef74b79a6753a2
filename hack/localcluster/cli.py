"""Runs a local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler, kwok)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hack.localcluster import components, control, pki
from hack.localcluster.components import BINARY_ENV
from hack.localcluster.errors import ClusterError, ComponentExited
from hack.localcluster.layout import Layout, default_dir, locked, log
from hack.localcluster.state import Component


def cmd_up(layout: Layout, timeout: float, build: bool, real_node: bool) -> int:
    started = time.monotonic()
    with locked(layout):
        current = control.status_of(layout)
        if all(ok for ok, _ in current.values()):
            log("cluster already up in %s", layout.dir)
            return start_real_node(layout, timeout, build) if real_node else 0
        control.stop(layout)  # whatever is left of an earlier, broken run
        bins = components.binaries(build)
        layout.dir.mkdir(parents=True, exist_ok=True)
        layout.dir.chmod(0o700)
        pki.make_pki(layout.pki)
        for attempt in (1, 2):
            try:
                control.start(layout, bins, timeout)
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
    return start_real_node(layout, timeout, build) if real_node else 0


def start_real_node(layout: Layout, timeout: float, build: bool) -> int:
    """hack/real-node up on this cluster: containerd, a kubelet, kube-proxy and an ingress."""
    argv = [str(control.REAL_NODE), f"--dir={layout.dir}", "up", f"--timeout={timeout}"]
    return subprocess.run(argv if build else [*argv, "--no-build"], check=False).returncode


def cmd_down(layout: Layout, purge: bool) -> int:
    with locked(layout):
        control.stop(layout)
        if purge:
            shutil.rmtree(layout.dir, ignore_errors=True)
    log("cluster down (%s)", layout.dir)
    return 0


def cmd_restart(layout: Layout, component: Component, kill: bool, timeout: float) -> int:
    started = time.monotonic()
    with locked(layout):
        control.restart(layout, components.binaries(build=False), component, kill, timeout)
    log("%s restarted in %.1fs", component.value, time.monotonic() - started)
    return 0


def cmd_status(layout: Layout) -> int:
    current = control.status_of(layout)
    for component, (ok, detail) in current.items():
        print(f"{component.value:25} {'up' if ok else 'DOWN':5} {detail}")
    return 0 if all(ok for ok, _ in current.values()) else 1


def cmd_env(layout: Layout) -> int:
    bins = components.binaries(build=False)
    print(f"export KUBECONFIG={shlex.quote(str(layout.admin_kubeconfig))}")
    print(f"export EC2_TERMINAL_CLUSTER_DIR={shlex.quote(str(layout.dir))}")
    for name, var in BINARY_ENV.items():
        print(f"export {var}={shlex.quote(bins[name])}")
    # kubectl and helm of the matching minor first on PATH, ahead of any system kubectl.
    tools = sorted({str(Path(bins["kubectl"]).parent), str(Path(bins["helm"]).parent)})
    print(f'export PATH={shlex.quote(":".join(tools))}:"$PATH"')
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    up.add_argument(
        "--real-node",
        action="store_true",
        help="also start a real node (hack/real-node up; docs/realnode.md)",
    )
    down = sub.add_parser("down", help="stop every component, wait until their ports are closed")
    down.add_argument(
        "--purge", action="store_true", help="also delete the state directory (certificates, logs)"
    )
    restart = sub.add_parser(
        "restart", help="stop one component and start it again on its ports (etcd keeps its data)"
    )
    restart.add_argument("component", choices=[c.value for c in Component])
    restart.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    restart.add_argument("--timeout", type=float, default=120, help="seconds to wait for health")
    sub.add_parser("status", help="health of each component; exit status 0 only when all are up")
    sub.add_parser("env", help="print shell exports (KUBECONFIG and binary paths)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`hack/cluster up|down|restart|status|env`."""
    args = build_parser().parse_args(argv)
    layout = Layout((args.dir or default_dir()).resolve())
    try:
        if args.command == "up":
            return cmd_up(layout, args.timeout, build=not args.no_build, real_node=args.real_node)
        if args.command == "down":
            return cmd_down(layout, args.purge)
        if args.command == "restart":
            return cmd_restart(layout, Component(args.component), args.kill, args.timeout)
        if args.command == "status":
            return cmd_status(layout)
        return cmd_env(layout)
    except (ClusterError, subprocess.CalledProcessError) as exc:
        print(f"hack/cluster {args.command}: {exc}", file=sys.stderr)
        return 1
