"""`ec2-terminal attach`: this terminal on a session, or watching a shared one read-only."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.options import access_token, option
from app.errors import ConfigurationError

if TYPE_CHECKING:
    from app.client.attach import Attacher


def add_attach_parser(commands: Any) -> None:
    """Register the `attach` subcommand."""
    parser = commands.add_parser(
        "attach",
        help="attach this terminal to a new session, or watch a shared one read-only",
        description=(
            "Open a session on the terminal server at URL and attach this terminal to it (raw "
            "mode; window size changes follow; the connection comes back after a drop and the "
            "session resumes where it was). The exit status is the remote shell's. The access "
            "token comes from --token-file or EC2_TERMINAL_TOKEN, never the command line. Type "
            "~. at the start of a line to disconnect, ~s for a read-only Share link, ~? for "
            "help. With a Share link (URL#view=<id>), or --view-id, watch someone's session "
            "read-only instead (q or Ctrl+C leaves)."
        ),
    )
    parser.add_argument("url", help="the terminal's address, e.g. https://host/t/ns/name/")
    option(parser, "--token-file", "file holding the access token", Path)
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="watch a shared session instead: the URL is its Share link (URL#view=<id>)",
    )
    parser.add_argument(
        "--view-id", help="the view id to watch (a Share link's #view=); implies --read-only"
    )
    parser.set_defaults(func=attach)


def attach(args: argparse.Namespace) -> int:
    """Attach until the session ends; its exit status (255 when the client itself failed)."""
    # Imported here: every other command (the server among them) starts without the client.
    from app.client.attach import Attacher, endpoint_for
    from app.client.local import LocalTerminal

    endpoint = endpoint_for(args.url, access_token(args.token_file), args.view_id)
    if args.read_only and endpoint.view_id is None:
        raise ConfigurationError(
            "--read-only watches a shared session: give its Share link (URL#view=<id>) or --view-id"
        )
    return asyncio.run(_attach(Attacher(endpoint, LocalTerminal())))


async def _attach(attacher: Attacher) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, attacher.leave, 128 + sig, f"stopped by {sig.name}")
    with attacher.local.raw():
        return await attacher.run()
