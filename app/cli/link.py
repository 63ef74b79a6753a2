"""`ec2-terminal link`: print a single-use, short-lived link to a terminal."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.auth import linktoken
from app.auth.accesskey import token_from_file
from app.cli.options import ENV_PREFIX, option
from app.errors import ConfigurationError


def add_link_parser(commands: Any) -> None:
    """Register the `link` subcommand."""
    parser = commands.add_parser(
        "link",
        help="print a single-use link to a terminal (the access token never goes in a URL)",
        description=(
            "Mint a link token from the access token (from --token-file or EC2_TERMINAL_TOKEN, "
            "never the command line) and print URL#token=<link token>. The link logs a browser "
            "in once, within --link-ttl seconds."
        ),
    )
    option(
        parser, "--url", "the terminal's address as a browser opens it (https://host/t/ns/name/)"
    )
    option(parser, "--token-file", "file holding the access token", Path)
    option(
        parser,
        "--base-path",
        "the server's --base-path, if a proxy strips a prefix (default: the URL's path)",
    )
    option(parser, "--link-ttl", "seconds the link stays valid", float, 300.0)
    parser.set_defaults(func=link)


def _access_token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        token = token_from_file(args.token_file)
    else:
        token = os.environ.get(ENV_PREFIX + "TOKEN", "").strip() or None
    if token is None:
        raise ConfigurationError("no access token: set --token-file or EC2_TERMINAL_TOKEN")
    return token


def link_url(url: str, token: str, ttl: float, base_path: str | None, now: float) -> str:
    """`url#token=<a new link token>` for the server at `base_path` (default: url's path)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"--url {url!r} must be an http:// or https:// address")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"--url {url!r} must have no query or fragment")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    base = base_path or path
    if not (base.startswith("/") and base.endswith("/")):
        raise ConfigurationError(f"base path {base!r} must start and end with '/'")
    if ttl <= 0:
        raise ConfigurationError("--link-ttl must be positive")
    fragment = "token=" + linktoken.mint(token, base, ttl, now)
    return urlunsplit((parts.scheme, parts.netloc, path, "", fragment))


def link(args: argparse.Namespace) -> int:
    """Print a single-use link."""
    if not args.url:
        raise ConfigurationError("--url is required (or EC2_TERMINAL_URL)")
    print(link_url(args.url, _access_token(args), args.link_ttl, args.base_path, time.time()))
    return 0
