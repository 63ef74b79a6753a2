"""Logging setup: one format for every logger, and no credential ever reaches a log line."""

from __future__ import annotations

import logging
import re

import asyncssh

_SECRETS = re.compile(
    r"(?i)(token=|bearer\s+|authorization:\s*\w+\s+|\"token\"\s*:\s*\"|"
    r"(?:set-)?cookie:\s*|ec2_terminal_auth_\w*=)[^\s&\"';,]+"
)
# Libraries that log request headers or bodies at debug level (AWS signatures and session
# tokens, Kubernetes bearer tokens): their debug lines are never wanted, even at --log-level
# debug, which is for this server's own decisions.
WIRE_LOGGERS = (
    "aiobotocore",
    "aiohttp",
    "boto3",
    "botocore",
    "hpack",
    "httpcore",
    "httpx",
    "kubernetes_asyncio",
    "urllib3",
    "websockets",
)


# Libraries that narrate every connection at INFO: asyncssh writes about 19 lines per session,
# the WebSocket layer "connection open". Below debug level only their warnings are kept.
CHATTY_LOGGERS = ("asyncssh", "websockets.server")


class RedactSecrets(logging.Filter):
    """Replaces tokens and cookies in query strings, headers and JSON with a placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(level: str) -> None:
    """Log to stderr with timestamps; every handler redacts credentials (uvicorn's too)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    root_level = logging.getLogger().level
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root_level))
    if root_level > logging.DEBUG:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(max(logging.WARNING, root_level))
    # asyncssh's own debug levels 2 and 3 log channel data and whole packets.
    asyncssh.set_debug_level(1)
