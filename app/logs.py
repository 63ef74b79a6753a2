"""Logging setup: one format for every logger, and no credential ever reaches a log line."""

from __future__ import annotations

import logging
import re

_SECRETS = re.compile(r"(?i)(token=|bearer\s+|authorization:\s*\w+\s+)[^\s&\"';,]+")


class RedactSecrets(logging.Filter):
    """Replaces tokens in query strings and Authorization values with a placeholder."""

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
