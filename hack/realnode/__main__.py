"""hack/real-node: a real node (containerd, kubelet, kube-proxy, Traefik) beside kwok's nodes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from hack.localcluster.errors import ClusterError
from hack.localcluster.layout import Layout, default_dir
from hack.realnode import containerd, forward, mounts, node
from hack.realnode.layout import NodeError, NodeLayout, Tools, tools


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hack/real-node", description=__doc__)
    p.add_argument(
        "--dir", type=Path, default=None, help="the cluster's state directory (as hack/cluster)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the node on the running cluster (no-op when healthy)")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for each part")
    up.add_argument("--no-build", action="store_true", help="fail instead of building")
    sub.add_parser("down", help="stop the node and remove everything it made outside its directory")
    sub.add_parser("status", help="health of each part; exit status 0 only when all are up")
    sub.add_parser("info", help="JSON: node name, label, taint, ingress URL, addresses, ctr")
    ex = sub.add_parser("exec", help="run a command in the node's network namespace")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    ct = sub.add_parser("ctr", help="run ctr against the node's containerd (namespace k8s.io)")
    ct.add_argument("argv", nargs=argparse.REMAINDER)
    imp = sub.add_parser(
        "import-image", help="import an OCI archive (podman save --format oci-archive)"
    )
    imp.add_argument("archive", type=Path)
    # Internal: the node's own processes.
    sub.add_parser("hold", help=argparse.SUPPRESS)
    fwd = sub.add_parser("forward", help=argparse.SUPPRESS)
    fwd.add_argument("host")
    fwd.add_argument("port", type=int)
    fwd.add_argument("target_port", type=int)
    return p


def run(args: argparse.Namespace) -> int:
    layout = NodeLayout(Layout((args.dir or default_dir()).resolve()))
    command: str = args.command
    if command == "hold":
        mounts.hold(layout)
        return 1
    if command == "forward":
        forward.main(args.host, args.port, args.target_port)
        return 0
    if command == "down":
        try:
            found_for_down: Tools | None = tools(build=False)
        except ClusterError:
            # Stopping needs none of the binaries (kubectl only to delete the Node object).
            found_for_down = None
        node.down(layout, found_for_down)
        return 0
    found = tools(build=command == "up" and not args.no_build)
    if command == "up":
        node.up(layout, found, args.timeout)
        return 0
    if command == "status":
        current = node.status(layout, found)
        for component, (ok, detail) in current.items():
            print(f"{component.value:12} {'up' if ok else 'DOWN':5} {detail}")
        return 0 if all(ok for ok, _ in current.values()) else 1
    if command == "info":
        print(json.dumps(node.info(layout, found), indent=2))
        return 0
    # The rest need a running node.
    netns = node.info(layout, found)["netns"]
    if command == "import-image":
        for name in containerd.import_archive(layout, found, args.archive):
            print(name)
        return 0
    argv = args.argv[1:] if args.argv[:1] == ["--"] else list(args.argv)
    if not argv:
        raise NodeError(f"{command}: no command given")
    if command == "ctr":
        return subprocess.run(containerd.ctr_argv(layout, found, *argv)).returncode
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", *argv]).returncode


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (ClusterError, subprocess.CalledProcessError) as exc:
        print(f"hack/real-node {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
