"""The long-lived access token: from the environment, or from a file re-read when it changes."""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from app.errors import ConfigurationError

log = logging.getLogger(__name__)


def read_token_file(path: Path) -> str | None:
    """The token in `path` without surrounding blanks; None if the file is empty."""
    return path.read_text().strip() or None


def token_from_file(path: Path) -> str | None:
    """`read_token_file`, with a ConfigurationError that says what is wrong with the file."""
    try:
        return read_token_file(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"token file {path} is not text") from None


class AccessKey:
    """The access token the server trusts now.

    A Kubernetes Secret mounted as a volume is updated in place by the kubelet (an atomic
    symlink swap), so the file is checked with one `stat` per `reload` and read again only when
    its identity, size or time changed: rotating the Secret rotates the token.
    """

    def __init__(self, token: str | None = None, path: Path | None = None) -> None:
        self._value = token
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        if path is not None:
            self.reload()

    @property
    def value(self) -> str | None:
        """The token, or None while none is configured."""
        return self._value

    def matches(self, candidate: str | None) -> bool:
        """Whether `candidate` is the token, compared in constant time."""
        if not self._value or candidate is None:
            return False
        return hmac.compare_digest(candidate.encode(), self._value.encode())

    def reload(self) -> bool:
        """Read the file again if it changed; True if the token is now a different one."""
        if self.path is None:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            seen = None
        else:
            seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if seen is not None and seen == self._seen:
            return False
        self._seen = seen
        try:
            token = read_token_file(self.path)
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not text"
            log.warning("cannot read the token file %s (%s): refusing everyone", self.path, why)
            token = None
        changed = token != self._value
        self._value = token
        return changed
