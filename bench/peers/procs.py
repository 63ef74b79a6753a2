"""What a server costs, read from /proc: CPU and memory of a process and all its descendants."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text.rsplit(")", 1)[1].split()


def children_map() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        # A process may end between listing and reading: it then has no children to count.
        with contextlib.suppress(OSError, IndexError):
            parent = int(_stat_fields(int(entry.name))[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children = children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of a process plus that of the children it has reaped (0 once it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14 to 17 of stat(5), 11 to 14 after the name.
    return sum(int(f) for f in fields[11:15]) / TICKS


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: resident memory with shared pages split among their sharers."""
    with contextlib.suppress(OSError):
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Usage:
    """CPU and memory of a set of processes at one moment."""

    cpu_s: float
    #: Sum of the processes' PSS: the memory they cost together, shared libraries counted once.
    pss_kib: int
    #: Resident memory of the first (main) process alone.
    main_rss_kib: int
    processes: int


def usage(pids: Iterable[int]) -> Usage:
    """CPU (reaped children included) and memory of these processes, the first the main one."""
    listed = list(pids)
    if not listed:
        return Usage(0.0, 0, 0, 0)
    return Usage(
        cpu_s=sum(cpu_seconds(p) for p in listed),
        pss_kib=sum(pss_kib(p) for p in listed),
        main_rss_kib=_status_kib(listed[0], "VmRSS"),
        processes=len(listed),
    )


_PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Orphans become this process's children meanwhile, not init's, to be counted and ended."""
    # A server's child that outlives its session (reparented away from the server) is still
    # that server's cost, and must not outlive the run.
    _set_subreaper(True)
    try:
        yield
    finally:
        _set_subreaper(False)


def children(pid: int) -> list[int]:
    """The children of `pid` (zombies included)."""
    return children_map().get(pid, [])


def is_zombie(pid: int) -> bool:
    """Whether `pid` has exited and waits to be reaped (or is gone)."""
    try:
        return _stat_fields(pid)[0] == "Z"
    except (OSError, IndexError):
        return True


def reap(pids: Iterable[int]) -> None:
    """Reap those of these processes (our children) that have exited."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def end(pids: Iterable[int]) -> None:
    """SIGKILL these processes (our own children) and reap them."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
