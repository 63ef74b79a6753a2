"""The client's private key, read from a file without ever quoting it."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from app.errors import ConfigurationError


def load_key(path: Path) -> asyncssh.SSHKey:
    """Read an unencrypted private key, with an error that names the file but not its content."""
    try:
        return asyncssh.read_private_key(str(path))
    except FileNotFoundError:
        raise ConfigurationError(f"SSH key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read SSH key file {path}: {exc.strerror}") from None
    except (asyncssh.KeyImportError, ValueError):
        # asyncssh's messages may quote the file; a Secret mounted here by mistake must not
        # reach a log or the browser, so the message names the file only.
        raise ConfigurationError(
            f"SSH key file {path} is not a usable private key (an unencrypted OpenSSH or PEM "
            "private key is expected)"
        ) from None
