"""The peers as running servers in front of one sshd, each started as its users would start it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx

from bench.bridge import ssh_argv
from bench.peers import procs
from bench.peers.install import Installed
from tests.fixtures_server import RunningServer, start_server
from tests.fixtures_sshd import Sshd
from tests.support import env_without_proxies, free_port, stop

#: Sessions the idle-memory workload opens at most, with room to spare.
MAX_SESSIONS = 1000


class Peer(StrEnum):
    """The tools measured side by side; `ssh -tt` is the floor, not a web terminal."""

    SSH = "ssh -tt"
    EC2_TERMINAL = "ec2-terminal"
    TTYD = "ttyd"
    #: ttyd with a client that offers no permessage-deflate: browsers always offer it, and
    #: ttyd 1.7.7 then drops or truncates large outputs (README); this shows its speed without.
    TTYD_PLAIN = "ttyd, no deflate"
    GOTTY = "gotty"
    WEBSSH = "webssh"
    WETTY = "wetty"

    @property
    def package(self) -> str | None:
        """What bench.peers.install provides for it (OpenSSH and ec2-terminal are already here)."""
        if self in (Peer.SSH, Peer.EC2_TERMINAL):
            return None
        return "ttyd" if self is Peer.TTYD_PLAIN else self.value


#: The web terminals the product competes with (ratios "to the best peer" are to these).
COMPETITORS = (Peer.TTYD, Peer.TTYD_PLAIN, Peer.GOTTY, Peer.WEBSSH, Peer.WETTY)

#: How each peer is run, beyond its defaults, and why: printed with the results.
SETTINGS = {
    Peer.SSH: "OpenSSH client, `ssh -tt` to the shared sshd",
    Peer.EC2_TERMINAL: "`ec2-terminal serve`, Bearer token from a token file; "
    f"--max-sessions {MAX_SESSIONS} and --max-connections {MAX_SESSIONS} for the idle workload",
    Peer.TTYD: "`ttyd -i lo -W -O ssh -t ...` (writable, Origin checked)",
    Peer.TTYD_PLAIN: "the same ttyd; its client offers no permessage-deflate",
    Peer.GOTTY: "`gotty --address 127.0.0.1 --permit-write ssh -t ...`",
    Peer.WEBSSH: "`wssh --policy=reject --hostfile=<known_hosts>` (host key checked); "
    f"--maxconn={MAX_SESSIONS} (default 20 per client address) for the idle workload; "
    "--encoding=utf-8 so it does not run the remote login shell twice per connect to ask",
    Peer.WETTY: "`wetty --force-ssh --ssh-auth publickey --ssh-key ... --known-hosts ...`",
}


@dataclass
class Target:
    """A running peer: where its clients connect and which processes its cost is read from."""

    peer: Peer
    sshd: Sshd
    port: int = 0
    #: Seconds from starting the process until it served its page (ec2-terminal: /readyz).
    startup_s: float = 0.0
    process: subprocess.Popen[bytes] | None = None
    server: RunningServer | None = None
    log_path: Path | None = None
    #: `ssh -tt` has no server: its cost is that of the clients, tracked per session.
    ssh_pids: set[int] = field(default_factory=set)
    retired_cpu_s: float = 0.0
    #: The harness's children before this peer started: any child beyond these (and the
    #: server) is an orphan the server left, adopted by the harness (procs.subreaper).
    baseline: frozenset[int] = frozenset()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The processes between sshd and the reader: the server and its children."""
        if self.process is None:
            return sorted(self.ssh_pids)
        found = procs.tree(self.process.pid)
        for orphan in self.orphans():
            found += procs.tree(orphan)
        return found

    def orphans(self) -> list[int]:
        """Processes the server started that no longer descend from it (adopted by the harness)."""
        if self.process is None:
            return []
        known = self.baseline | {self.process.pid}
        adopted = [p for p in procs.children(os.getpid()) if p not in known]
        # An adopted orphan that has exited is ours to reap; it costs nothing any more.
        procs.reap(p for p in adopted if procs.is_zombie(p))
        return [p for p in adopted if not procs.is_zombie(p)]

    def usage(self) -> procs.Usage:
        found = procs.usage(self.pids())
        if self.peer is Peer.SSH:
            return procs.Usage(
                found.cpu_s + self.retired_cpu_s, found.pss_kib, found.main_rss_kib, found.processes
            )
        return found

    def retire(self, pid: int) -> None:
        """An `ssh -tt` client is about to end: keep the CPU it spent."""
        self.retired_cpu_s += procs.cpu_seconds(pid)
        self.ssh_pids.discard(pid)

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def _wait_ready(target: Target, url: str, started: float, timeout: float = 60) -> None:
    """Poll `url` until it answers 200; sets the start-up time."""
    assert target.process is not None
    deadline = started + timeout
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if target.process.poll() is not None:
                raise RuntimeError(f"{target.peer} exited at start: {target.log()}")
            try:
                if client.get(url).status_code == 200:
                    target.startup_s = time.monotonic() - started
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    target.stop()
    raise RuntimeError(f"{target.peer} did not answer {url} within {timeout} s: {target.log()}")


def _spawn(target: Target, argv: list[str], directory: Path) -> float:
    target.log_path = directory / "server.log"
    with target.log_path.open("wb") as log:
        started = time.monotonic()
        target.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=directory, env=env_without_proxies()
        )
    return started


def start(peer: Peer, sshd: Sshd, installed: dict[str, Installed], directory: Path) -> Target:
    """Start `peer` against `sshd`, its files in `directory`, and wait until it serves."""
    target = Target(peer, sshd, baseline=frozenset(procs.children(os.getpid())))
    if peer is Peer.SSH:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    if peer is Peer.EC2_TERMINAL:
        started = time.monotonic()
        target.server = start_server(
            directory,
            sshd,
            wait=False,
            log_level="warning",
            max_sessions=MAX_SESSIONS,
            max_connections=MAX_SESSIONS,
        )
        target.process, target.port = target.server.process, target.server.port
        target.log_path = target.server.log_path
        _wait_ready(target, f"{target.origin}/readyz", started)
        return target
    target.port = free_port()
    assert peer.package is not None
    program = str(installed[peer.package].program)
    ssh = ssh_argv(sshd, "-t")
    if peer in (Peer.TTYD, Peer.TTYD_PLAIN):
        argv = [program, "--port", str(target.port), "--interface", "lo", "--writable"]
        argv += ["--check-origin", *ssh]
        page = "/"
    elif peer is Peer.GOTTY:
        argv = [program, "--address", "127.0.0.1", "--port", str(target.port), "--permit-write"]
        argv += ssh
        page = "/"
    elif peer is Peer.WEBSSH:
        argv = [program, "--address=127.0.0.1", f"--port={target.port}", "--policy=reject"]
        argv += [f"--hostfile={sshd.known_hosts_path}", f"--maxconn={MAX_SESSIONS}"]
        argv += ["--encoding=utf-8", "--logging=warning"]
        page = "/"
    else:
        node = shutil.which("node") or "node"
        argv = [node, program, "--host", "127.0.0.1", "--port", str(target.port)]
        argv += ["--ssh-host", sshd.host, "--ssh-port", str(sshd.port), "--ssh-user", sshd.user]
        argv += ["--ssh-auth", "publickey", "--ssh-key", str(sshd.client_key_path)]
        argv += ["--known-hosts", str(sshd.known_hosts_path), "--force-ssh"]
        page = "/"
    started = _spawn(target, argv, directory)
    _wait_ready(target, target.origin + page, started)
    return target
