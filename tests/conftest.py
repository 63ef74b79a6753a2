"""Shared pytest configuration: fixture plugins live in their own modules."""

pytest_plugins = [
    "tests.fixtures_kube",
]
