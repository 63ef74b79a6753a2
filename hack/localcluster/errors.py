"""What goes wrong starting or stopping the cluster."""

from __future__ import annotations


class ClusterError(Exception):
    """A component failed to start or stop; the message says which and where its log is."""


class ComponentExited(ClusterError):
    """A component exited while starting; ``port_clash`` when its port was taken meanwhile."""

    def __init__(self, message: str, port_clash: bool) -> None:
        super().__init__(message)
        self.port_clash = port_clash
