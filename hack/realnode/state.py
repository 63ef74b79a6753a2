"""What a real node is made of: its slot, ports and processes, as its state.json records them."""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.localcluster.state import Process


class Component(enum.Enum):
    """The node's processes, in start order (stopped in reverse)."""

    HOLDER = "holder"
    CONTAINERD = "containerd"
    FORWARDER = "forwarder"
    KUBELET = "kubelet"
    KUBE_PROXY = "kube-proxy"
    TRAEFIK = "traefik"


@dataclass
class NodeState:
    """The slot first (recorded before anything is made), then ports and processes as they start."""

    slot: int
    api_port: int = 0
    forward_port: int = 0
    web_port: int = 0
    ping_port: int = 0
    processes: dict[Component, Process] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> NodeState | None:
        """The recorded state; None when there is none or it cannot be read."""
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            return cls(
                slot=int(raw["slot"]),
                api_port=int(raw.get("api_port", 0)),
                forward_port=int(raw.get("forward_port", 0)),
                web_port=int(raw.get("web_port", 0)),
                ping_port=int(raw.get("ping_port", 0)),
                processes={
                    Component(name): Process.from_json(entry)
                    for name, entry in raw.get("processes", {}).items()
                },
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, path: Path) -> None:
        """Writes the state file atomically."""
        raw = {
            "slot": self.slot,
            "api_port": self.api_port,
            "forward_port": self.forward_port,
            "web_port": self.web_port,
            "ping_port": self.ping_port,
            "processes": {c.value: p.to_json() for c, p in self.processes.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        os.replace(tmp, path)
