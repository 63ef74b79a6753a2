"""Shared pytest configuration: fixture plugins live in their own modules."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures_sshd",
    "tests.fixtures_server",
    "tests.fixtures_kube",
    "tests.fixtures_realnode",
    "tests.fixtures_moto",
    "tests.fixtures_operator",
    "tests.fixtures_healthcheck",
    "tests.fixtures_otel",
    "tests.secretscan",
]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, like the server."""
    return "asyncio"
