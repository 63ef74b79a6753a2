"""`ec2-terminal demo`: the whole product on one machine, against a loopback SSH server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

from app.cli.link import link_url
from app.http.application import create_app
from app.http.server import DrainingServer, uvicorn_config
from app.settings import HostKeyPolicy, LogLevel, Settings, Target
from app.ssh.hostkeys import sha256
from app.ssh.localsshd import start_local_sshd
from app.telemetry import Component, Telemetry, setup_telemetry


def add_demo_parser(commands: Any) -> None:
    """Register the `demo` subcommand."""
    parser = commands.add_parser("demo", help="serve your own shell through the whole stack")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--listen-port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--shell", default=os.environ.get("SHELL", "/bin/bash"), help="shell to run"
    )
    parser.add_argument("--recordings-dir", type=Path, help="keep asciicast recordings here")
    parser.add_argument(
        "--clipboard-osc52",
        action="store_true",
        help="let programs in the shell set the browser's clipboard (OSC 52; writes only)",
    )
    parser.add_argument(
        "--log-level",
        default=LogLevel.WARNING.value,
        choices=[level.value for level in LogLevel],
        help="server log level",
    )
    parser.set_defaults(func=demo)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening before the link is printed: a browser that is quicker than the server's start
    # waits in the backlog instead of being refused.
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def _run(args: argparse.Namespace, workdir: Path, telemetry: Telemetry) -> None:
    user = getpass.getuser()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = workdir / "demo_client_key"
    client_key.write_private_key(str(key_file))
    key_file.chmod(0o600)
    shell = [args.shell, "-l"]
    sshd = await start_local_sshd(user, host_key, client_key, shell)
    ssh_port = sshd.sockets[0].getsockname()[1]
    token = secrets.token_urlsafe(32)
    sock = _bind(args.listen_host, args.listen_port)
    web_port = sock.getsockname()[1]
    settings = Settings(
        target=Target(
            host="127.0.0.1",
            port=ssh_port,
            user=user,
            key_file=key_file,
            host_key_policy=HostKeyPolicy.FINGERPRINT,
            host_key_fingerprint=sha256(host_key),
        ),
        listen_host=args.listen_host,
        listen_port=web_port,
        token=token,
        recordings_dir=args.recordings_dir,
        clipboard_osc52=args.clipboard_osc52,
        log_level=LogLevel(args.log_level),
    )
    app = create_app(settings, telemetry=telemetry)
    server = DrainingServer(uvicorn_config(app, settings), app)
    host = f"[{args.listen_host}]" if ":" in args.listen_host else args.listen_host
    url = f"http://{host}:{web_port}/"
    token_file = workdir / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    minutes = settings.link_ttl / 60
    print(f"ec2-terminal demo: SSH server on 127.0.0.1:{ssh_port}, host key {sha256(host_key)}")
    print(f"Open this link (it logs one browser in once, within {minutes:g} minutes):")
    print(f"  {link_url(url, token, settings.link_ttl, None, time.time())}")
    print(f"Another link: ec2-terminal link --url {url} --token-file {token_file}")
    print("Press Ctrl+C to stop.", flush=True)
    try:
        await server.serve(sockets=[sock])
    finally:
        sshd.close()
        await sshd.wait_closed()


def demo(args: argparse.Namespace) -> int:
    """Run the demo until interrupted."""
    telemetry = setup_telemetry(Component.DEMO)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="ec2-terminal-demo-") as workdir,
            contextlib.suppress(KeyboardInterrupt),
        ):
            asyncio.run(_run(args, Path(workdir), telemetry))
    finally:
        telemetry.shutdown()
    print("ec2-terminal demo: stopped.", file=sys.stderr)
    return 0
