"""The machine-wide part of a real node: its slot, network namespace, veth link and pod route.

Every real node on the machine gets a slot (layout.Slot), recorded in ``/run/ec2-terminal-realnode``
as a file naming the node directory that holds it. A slot is free when no file names it, or when
the node directory it names no longer claims it (a state directory deleted without
``hack/real-node down``); the leftovers of such a slot are removed before it is reused. /run is
emptied at boot, as network namespaces are.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from hack.realnode import cgroups
from hack.realnode.layout import SLOTS, NodeError, NodeLayout, Slot
from hack.realnode.state import NodeState

REGISTRY = Path("/run/ec2-terminal-realnode")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise NodeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


@contextlib.contextmanager
def registry_lock() -> Iterator[None]:
    """Serialises slot allocation and release between every real node on the machine."""
    REGISTRY.mkdir(mode=0o755, exist_ok=True)
    with open(REGISTRY / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def claimed_slot(node_dir: Path) -> int | None:
    """The slot a node directory's state file records, if any."""
    state = NodeState.load(node_dir / "state.json")
    return state.slot if state is not None else None


def routed_networks() -> list[ipaddress.IPv4Network]:
    """Destinations the machine already routes (another tool's bridge, a VPN), besides ours."""
    out = json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    nets = []
    for route in out:
        dst = route.get("dst", "")
        dev = route.get("dev", "")
        if dst in ("", "default") or str(dev).startswith("ec2t-rn"):
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def allocate(layout: NodeLayout) -> Slot:
    """A free slot for LAYOUT's node; call under registry_lock() and record it before leaving."""
    own = layout.dir.resolve()
    taken: set[int] = set()
    for entry in REGISTRY.glob("[0-9]*"):
        index, holder = int(entry.name), owner(int(entry.name))
        if holder is not None and holder != own and claimed_slot(holder) == index:
            taken.add(index)
    busy = routed_networks()
    for index in range(SLOTS):
        slot = Slot(index)
        if index in taken:
            continue
        if any(slot.link.overlaps(n) or slot.pod_cidr.overlaps(n) for n in busy):
            continue
        # Whatever is left under its name (a directory deleted with its node running, a crash)
        # is no node's any more.
        release(slot)
        (REGISTRY / str(index)).write_text(f"{own}\n")
        return slot
    raise NodeError(f"no free real-node slot: all {SLOTS} are in use ({REGISTRY})")


def owner(index: int) -> Path | None:
    """The node directory the registry records for a slot, if any."""
    try:
        return Path((REGISTRY / str(index)).read_text().strip())
    except FileNotFoundError:
        return None


def release_own(layout: NodeLayout, recorded: set[int]) -> None:
    """Releases RECORDED and every slot the registry gives LAYOUT's node; call under the lock."""
    # A recorded slot the registry now gives another node is that node's and left alone: the
    # registry is emptied at boot, the state file is not.
    own = layout.dir.resolve()
    registered = {int(e.name) for e in REGISTRY.glob("[0-9]*") if owner(int(e.name)) == own}
    for index in sorted(recorded | registered):
        if owner(index) in (None, own):
            release(Slot(index))


def release(slot: Slot) -> None:
    """Removes the slot's processes, cgroups, namespace (veth pair and route with it), record."""
    cgroups.kill_all(slot.name)
    cgroups.remove(slot.name)
    if slot.netns_path.exists():
        # Deleting the namespace destroys its interfaces: the veth pair and the route through it.
        ip("netns", "delete", slot.name, check=False)
    ip("link", "delete", slot.name, check=False)
    (REGISTRY / str(slot.index)).unlink(missing_ok=True)


def create_network(slot: Slot) -> None:
    """The namespace, the veth link to it and the machine's route to the pod network."""
    ip("netns", "add", slot.name)
    ns = ("-n", slot.name)
    ip("link", "add", slot.name, "type", "veth", "peer", "name", "eth0", "netns", slot.name)
    prefix = slot.link.prefixlen
    ip("addr", "add", f"{slot.host_ip}/{prefix}", "dev", slot.name)
    ip("link", "set", slot.name, "up")
    ip(*ns, "addr", "add", f"{slot.node_ip}/{prefix}", "dev", "eth0")
    ip(*ns, "link", "set", "lo", "up")
    ip(*ns, "link", "set", "eth0", "up")
    ip(*ns, "route", "add", "default", "via", slot.host_ip)
    ip("route", "add", str(slot.pod_cidr), "via", slot.node_ip, "dev", slot.name)
