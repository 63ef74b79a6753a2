"""Pytest plugin: a real OpenSSH sshd on 127.0.0.1 with generated host and user keys."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import free_port, poll, port_open, stop

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# The machine's login profile is not under test, and can hang (pyenv's rehash lock, left by a
# shell killed mid-login): sessions run a plain bash, interactive or with the client's command.
# SFTP (file transfer) runs as the subsystem, through the same script (ForceCommand applies to
# subsystems too). As root the kernel would grant every file access, so the SFTP server runs
# without the capabilities that bypass permission checks: it is refused where any user would be.
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SESSION_SCRIPT = f"""#!/bin/sh
export PS1='test$ '
if [ "$SSH_ORIGINAL_COMMAND" = "{SFTP_SERVER}" ]; then
  if [ "$(id -u)" = 0 ]; then
    exec setpriv --inh-caps -dac_override,-dac_read_search,-fowner \\
      --bounding-set -dac_override,-dac_read_search,-fowner {SFTP_SERVER}
  fi
  exec {SFTP_SERVER}
fi
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then
  exec /bin/bash --noprofile --norc -c "$SSH_ORIGINAL_COMMAND"
fi
exec /bin/bash --noprofile --norc -i
"""


def keygen(path: Path, kind: str = "ed25519") -> str:
    """Make a key pair at `path`; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "ec2-terminal-test", "-f", str(path)],
        check=True,
    )
    return Path(f"{path}.pub").read_text().strip()


def fingerprint(public_key_path: Path) -> str:
    """SHA256:... of a public key file, as ssh-keygen prints it."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


@dataclass
class Sshd:
    """A running sshd and everything a client needs to reach it."""

    host: str
    port: int
    user: str
    directory: Path
    host_key_path: Path
    host_public_key: str
    host_key_sha256: str
    client_key_path: Path
    known_hosts_path: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log(self) -> str:
        """What sshd has logged so far."""
        return self.log_path.read_text(errors="replace")


SshdFactory = Callable[..., Sshd]


def start_sshd(
    directory: Path,
    extra_config: str = "",
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
) -> Sshd:
    """Start sshd with fresh keys, its files in `directory`; wait until it accepts connections.

    `prefix` runs it under another command (`ip netns exec NAME`), listening on `host`.
    """
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = directory / "host_ed25519"
    host_public = keygen(host_key)
    client_key = directory / "client_ed25519"
    client_public = keygen(client_key)
    authorized = directory / "authorized_keys"
    authorized.write_text(client_public + "\n")
    port = free_port()
    config = directory / "sshd_config"
    log_path = directory / "sshd.log"
    session = directory / "session.sh"
    session.write_text(SESSION_SCRIPT)
    session.chmod(0o755)
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {host}",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # pytest's temporary directories sit under the world-writable /tmp.
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "PrintMotd no",
                "PrintLastLog no",
                "LogLevel VERBOSE",
                "MaxStartups 100",
                "ClientAliveInterval 0",
                f"ForceCommand {session}",
                f"Subsystem sftp {SFTP_SERVER}",
                # sshd starts ForceCommand through the user's shell; Debian's bash then reads
                # ~/.bashrc ("run by sshd", top level only). With SHLVL=1 it is not the top level,
                # so a machine's .bashrc (pyenv's rehash lock, say) never delays a test shell.
                "SetEnv SHLVL=1",
                extra_config,
                "",
            ]
        )
    )
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[{host}]:{port} {host_public}\n")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*prefix, SSHD, "-D", "-e", "-f", str(config)], stdout=log_file, stderr=log_file
        )
    server = Sshd(
        host=host,
        port=port,
        user=getpass.getuser(),
        directory=directory,
        host_key_path=host_key,
        host_public_key=host_public,
        host_key_sha256=fingerprint(Path(f"{host_key}.pub")),
        client_key_path=client_key,
        known_hosts_path=known_hosts,
        config_path=config,
        log_path=log_path,
        process=process,
    )
    try:
        poll(
            lambda: process.poll() is None and port_open(port, host),
            timeout=10,
            what=f"sshd on port {port} (log: {log_path})",
        )
    except TimeoutError:
        stop(process)
        raise
    return server


@pytest.fixture
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFactory]:
    """Starts sshd instances; `extra_config` lines are appended to sshd_config."""
    started: list[Sshd] = []

    def start(extra_config: str = "") -> Sshd:
        server = start_sshd(tmp_path_factory.mktemp("sshd"), extra_config)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server.process)


@pytest.fixture
def sshd(sshd_factory: SshdFactory) -> Sshd:
    """One sshd with default settings."""
    return sshd_factory()
