"""Flags that default to an EC2_TERMINAL_* variable, refused alike when bad in either place."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from app.auth.accesskey import token_from_file
from app.errors import ConfigurationError

ENV_PREFIX = "EC2_TERMINAL_"
# The prototype's variables keep working.
LEGACY_ENV = {"host": "AWS_HOSTNAME", "user": "AWS_USERNAME"}


def env_name(dest: str) -> str:
    """The variable behind the flag whose argparse dest is `dest`."""
    return ENV_PREFIX + dest.upper()


def option(
    parser: argparse._ActionsContainer,
    flag: str,
    help: str,
    type: Callable[[str], Any] = str,
    default: Any = None,
    choices: Sequence[str] | None = None,
) -> None:
    """A flag defaulting to EC2_TERMINAL_<NAME>, then the legacy variable, then `default`."""
    dest = flag.lstrip("-").replace("-", "_")
    env = env_name(dest)
    raw = os.environ.get(env)
    if raw is None and dest in LEGACY_ENV:
        raw = os.environ.get(LEGACY_ENV[dest])
    convert = _checked(type, choices, env) if choices else type
    parser.add_argument(
        flag,
        dest=dest,
        type=convert,
        # A string default goes through `convert` as if typed on the command line, so a bad
        # environment value is refused like a bad flag: a message and exit status 2.
        default=raw if raw not in (None, "") else default,
        help=f"{help} [env {env}]",
        metavar="{" + ",".join(choices) + "}" if choices else None,
    )


def access_token(token_file: Path | None) -> str:
    """A client command's access token: from `token_file`, else EC2_TERMINAL_TOKEN.

    Never from the command line, where every user of the machine can read it (`ps`).
    """
    if token_file is not None:
        token = token_from_file(token_file)
    else:
        token = os.environ.get(ENV_PREFIX + "TOKEN", "").strip() or None
    if token is None:
        raise ConfigurationError("no access token: set --token-file or EC2_TERMINAL_TOKEN")
    return token


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _truth(env: str) -> Callable[[str], bool]:
    def convert(raw: str) -> bool:
        word = raw.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not one of {', '.join(TRUE_WORDS + FALSE_WORDS)} (from the flag or {env})"
        )

    return convert


def switch(parser: argparse._ActionsContainer, flag: str, help: str) -> None:
    """An on/off flag, off by default: `--flag` or `--flag on|off`, or EC2_TERMINAL_<NAME>."""
    dest = flag.lstrip("-").replace("-", "_")
    env = env_name(dest)
    raw = os.environ.get(env)
    parser.add_argument(
        flag,
        dest=dest,
        type=_truth(env),
        nargs="?",
        const=True,
        # A string default goes through the converter, so a bad variable is refused too.
        default=raw if raw not in (None, "") else False,
        help=f"{help} [env {env}]",
        metavar="on|off",
    )


def choice(parser: argparse._ActionsContainer, flag: str, help: str, default: Enum) -> None:
    """An `option` whose values are those of `default`'s enum."""
    option(parser, flag, help, str, default.value, [m.value for m in type(default)])


def _checked(type: Callable[[str], Any], choices: Sequence[str], env: str) -> Callable[[str], Any]:
    """`type`, refusing values outside `choices` (argparse checks no defaults against them)."""

    def convert(raw: str) -> Any:
        if raw not in choices:
            raise argparse.ArgumentTypeError(
                f"{raw!r} is not one of {', '.join(choices)} (from the flag or {env})"
            )
        return type(raw)

    return convert
