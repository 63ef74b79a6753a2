"""A network namespace joined to this one by a veth pair, whose link a test can cut and restore."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


def ip(*args: str) -> None:
    """Run `ip` and fail with its message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


@dataclass(frozen=True)
class Netns:
    """A namespace `name` reached at `address` through the veth `inside` (outside: `outside`)."""

    name: str
    inside: str
    outside: str
    address: str

    @property
    def prefix(self) -> list[str]:
        """Runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Drop the namespace's side of the link: packets vanish both ways, nothing is reset."""
        ip("-n", self.name, "link", "set", self.inside, "down")

    def restore(self) -> None:
        ip("-n", self.name, "link", "set", self.inside, "up")


def _free_subnet() -> int:
    """A third octet for 10.213.N.0/30 that no interface here uses."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for _ in range(64):
        octet = secrets.randbelow(256)
        if f"10.213.{octet}." not in used:
            return octet
    raise AssertionError("no free 10.213.N.0/30 subnet for the test's namespace")


@contextlib.contextmanager
def network_namespace() -> Iterator[Netns]:
    """A fresh namespace with its own loopback and a /30 to this one; deleted afterwards."""
    assert os.geteuid() == 0, "network namespaces need root: run this test as root"
    tag = secrets.token_hex(3)
    octet = _free_subnet()
    ns = Netns(f"ec2t-rel-{tag}", f"reli{tag}", f"relo{tag}", f"10.213.{octet}.2")
    ip("netns", "add", ns.name)
    try:
        ip("link", "add", ns.outside, "type", "veth", "peer", "name", ns.inside, "netns", ns.name)
        ip("addr", "add", f"10.213.{octet}.1/30", "dev", ns.outside)
        ip("link", "set", ns.outside, "up")
        ip("-n", ns.name, "addr", "add", f"{ns.address}/30", "dev", ns.inside)
        ip("-n", ns.name, "link", "set", ns.inside, "up")
        ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        # Deleting the namespace deletes its end of the pair, and with it the other end.
        ip("netns", "delete", ns.name)
