"""The real node's cgroup: every process of the node, its containers included, lives under it.

``/<name>/system`` holds the node's daemons (and so containerd's shims); the kubelet puts pods
under ``/<name>/kubepods`` (its cgroupRoot). One cgroup for all makes stopping the node exact:
kill what is in it, and nothing else. Works on cgroup v1 (every hierarchy mounted under
/sys/fs/cgroup, as on these machines, hybrid included) and on the unified v2 hierarchy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from hack.realnode.layout import NodeError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def unified() -> bool:
    """True on a pure cgroup v2 machine (/sys/fs/cgroup is itself the unified hierarchy)."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def hierarchies() -> list[Path]:
    """The mount points of every cgroup hierarchy under /sys/fs/cgroup."""
    if unified():
        return [CGROUP_ROOT]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        mount_point = Path(fields[4])
        if fstype in ("cgroup", "cgroup2") and mount_point.parent == CGROUP_ROOT:
            found.append(mount_point)
    return found


def create(name: str) -> None:
    """Creates /NAME and /NAME/system in every hierarchy, ready to take processes."""
    for h in hierarchies():
        for rel in (name, f"{name}/system"):
            (h / rel).mkdir(exist_ok=True)
            if h.name == "cpuset":
                # A v1 cpuset starts with no CPUs and no memory nodes and refuses processes.
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (h / rel / f).write_text((h / rel).parent.joinpath(f).read_text())
    if unified():
        # Let the kubelet and runc use the controllers below /NAME (v2 delegates them explicitly).
        enabled = (CGROUP_ROOT / "cgroup.subtree_control").read_text().split()
        (CGROUP_ROOT / name / "cgroup.subtree_control").write_text(
            " ".join(f"+{c}" for c in enabled)
        )


def join(name: str, pid: int) -> None:
    """Moves PID into /NAME/system in every hierarchy."""
    for h in hierarchies():
        (h / name / "system" / "cgroup.procs").write_text(f"{pid}\n")


def procs(name: str) -> set[int]:
    """Every process in /NAME or below, in any hierarchy."""
    pids: set[int] = set()
    for h in hierarchies():
        top = h / name
        if not top.is_dir():
            continue
        for dirpath, _, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    text = (Path(dirpath) / "cgroup.procs").read_text()
                    pids.update(int(p) for p in text.split())
    return pids


def freezer(name: str) -> Path | None:
    path = CGROUP_ROOT / "freezer" / name / "freezer.state"
    return path if path.exists() else None


def kill_all(name: str, timeout: float = 20.0) -> None:
    """SIGKILLs every process under /NAME and waits until none is left."""
    # Frozen first where a v1 freezer exists (cgroup.kill on v2), so nothing forks in between.
    if unified() and (CGROUP_ROOT / name / "cgroup.kill").exists():
        (CGROUP_ROOT / name / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while pids := procs(name):
        frozen = freezer(name)
        if frozen:
            with contextlib.suppress(OSError):
                frozen.write_text("FROZEN")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if frozen:
            with contextlib.suppress(OSError):
                frozen.write_text("THAWED")
        if time.monotonic() > deadline:
            raise NodeError(f"processes {sorted(pids)} in cgroup /{name} survived SIGKILL")
        time.sleep(0.1)


def remove(name: str, timeout: float = 10.0) -> None:
    """Removes /NAME and everything below it in every hierarchy (they must be empty)."""
    deadline = time.monotonic() + timeout
    for h in hierarchies():
        top = h / name
        if not top.is_dir():
            continue
        dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts))
        for d in reversed(dirs):
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # A cgroup whose last process just died is busy for a moment.
                    if time.monotonic() > deadline:
                        raise NodeError(f"cannot remove cgroup {d}: {exc}") from exc
                    time.sleep(0.05)
