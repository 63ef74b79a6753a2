"""Where a cluster instance keeps its files, and the lock that serialises up and down."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EC2_TERMINAL_CACHE") or Path.home() / ".cache/ec2-terminal")


def log(msg: str, *args: object) -> None:
    """A progress line on stderr."""
    print("==> " + (msg % args if args else msg), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Layout:
    """Where one cluster instance keeps its files."""

    dir: Path

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd-data"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubeconfig(self, user: str) -> Path:
        return self.dir / f"{user}.kubeconfig"

    @property
    def lock(self) -> Path:
        return self.dir.parent / f".{self.dir.name}.lock"


def default_dir() -> Path:
    """$EC2_TERMINAL_CLUSTER_DIR, else the shared cache's."""
    return Path(os.environ.get("EC2_TERMINAL_CLUSTER_DIR") or CACHE / "cluster/run").resolve()


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    """Serialises up/down on one state directory across processes."""
    layout.dir.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
