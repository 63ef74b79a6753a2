"""The `ec2-terminal` command: `serve`, `demo`, `link`, `health-check` and `worker`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import logs
from app.cli.demo import add_demo_parser
from app.cli.link import add_link_parser
from app.cli.serve import add_serve_parser
from app.errors import ConfigurationError
from app.healthcheck.cli import add_parsers as add_healthcheck_parsers


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="ec2-terminal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(commands)
    add_demo_parser(commands)
    add_link_parser(commands)
    add_healthcheck_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(getattr(args, "log_level", "info"))
    try:
        result: int = args.func(args)
    except ConfigurationError as exc:
        print(f"ec2-terminal: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result
