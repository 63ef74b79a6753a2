"""What a running cluster is made of: its components, their ports and processes (state.json)."""

from __future__ import annotations

import enum
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.localcluster.layout import Layout


class Component(enum.Enum):
    """A process of the cluster, in start order (`down` stops them in reverse)."""

    ETCD = "etcd"
    APISERVER = "kube-apiserver"
    CONTROLLER_MANAGER = "kube-controller-manager"
    SCHEDULER = "kube-scheduler"
    KWOK = "kwok"


# etcd's peer port, the one port that belongs to no component of its own.
ETCD_PEER = "etcd-peer"


@dataclass(frozen=True)
class Ports:
    """The port each component listens on (127.0.0.1), and etcd's peer port."""

    of: Mapping[Component, int]
    etcd_peer: int

    def __getitem__(self, component: Component) -> int:
        return self.of[component]

    def all(self) -> list[int]:
        """Every port, etcd's peer port included."""
        return [*self.of.values(), self.etcd_peer]

    @classmethod
    def pick(cls, apiserver: int | None = None) -> Ports:
        """Distinct free ports; the API server's is `apiserver` when given."""
        taken = [apiserver] if apiserver else []

        def fresh() -> int:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.append(port)
            return port

        of = {
            c: apiserver if apiserver and c is Component.APISERVER else fresh() for c in Component
        }
        return cls(of=of, etcd_peer=fresh())

    def to_json(self) -> dict[str, int]:
        return {**{c.value: p for c, p in self.of.items()}, ETCD_PEER: self.etcd_peer}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Ports:
        return cls(of={c: int(raw[c.value]) for c in Component}, etcd_peer=int(raw[ETCD_PEER]))


def free_port() -> int:
    """A port free on 127.0.0.1 now (another process may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of PID, so a recycled PID is never mistaken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if fields[0] != "Z" else None


@dataclass(frozen=True)
class Process:
    """A component's process: its PID, the kernel's start time of it, and its log."""

    pid: int
    start: str | None
    log: Path

    def alive(self) -> bool:
        """Still running, and still the process we started (not a recycled PID)."""
        return self.start is not None and proc_start_time(self.pid) == self.start

    @classmethod
    def of(cls, pid: int, log: Path) -> Process:
        return cls(pid=pid, start=proc_start_time(pid), log=log)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start, "log": str(self.log)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Process:
        start = raw.get("start")
        return cls(
            pid=int(raw["pid"]),
            start=str(start) if start is not None else None,
            log=Path(str(raw["log"])),
        )


@dataclass
class State:
    """What `up` started: the ports, the API server's URL and each component's process."""

    ports: Ports
    server: str
    processes: dict[Component, Process]

    @classmethod
    def load(cls, layout: Layout) -> State | None:
        """The recorded state; None when there is none or it cannot be read."""
        try:
            raw = json.loads(layout.state.read_text())
            return cls(
                ports=Ports.from_json(raw["ports"]),
                server=str(raw["server"]),
                processes={
                    Component(name): Process.from_json(entry)
                    for name, entry in raw["processes"].items()
                },
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, layout: Layout) -> None:
        """Writes state.json atomically."""
        raw = {
            "ports": self.ports.to_json(),
            "server": self.server,
            "processes": {c.value: p.to_json() for c, p in self.processes.items()},
        }
        tmp = layout.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=2))
        os.replace(tmp, layout.state)
