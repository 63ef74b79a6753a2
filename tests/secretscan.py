"""Pytest plugin: after the whole run, every log, recording and exported span the tests wrote is
searched for the tokens, cookies, passwords and private keys they used; a hit fails the run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where the tests keep what they issued: file names under pytest's temporary directory.
SECRET_FILES = ("token", "redis-password", "issued-secrets")
PRIVATE_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----"
# What a process leaves behind for people to read: logs, recordings, spans, reports.
EVIDENCE_SUFFIXES = (".log", ".cast", ".json", ".jsonl", ".txt", ".out")
LARGEST = 64 * 2**20


@dataclass(frozen=True)
class Leak:
    """A secret of `kind` from `source` found in `where`."""

    kind: str
    source: Path
    where: Path


def secrets_in(directory: Path) -> Iterator[tuple[str, Path, bytes]]:
    """(kind, file, needle) of every secret the tests issued under `directory`."""
    for path in directory.rglob("*"):
        if not path.is_file() or path.stat().st_size > LARGEST:
            continue
        if path.name in SECRET_FILES:
            for line in path.read_bytes().splitlines():
                if len(line.strip()) >= 16:
                    yield path.name, path, line.strip()
        elif path.stat().st_size < 16384 and path.read_bytes().startswith(PRIVATE_KEY):
            # The key's body lines: any one of them in a log would be part of the key.
            body = path.read_bytes().splitlines()[1:-1]
            for line in body:
                yield "private key", path, line.strip()


def evidence_in(directories: Iterable[Path]) -> Iterator[Path]:
    for directory in directories:
        if directory.is_dir():
            for path in directory.rglob("*"):
                readable = path.suffix in EVIDENCE_SUFFIXES and path.is_file()
                if readable and path.stat().st_size <= LARGEST:
                    yield path


def scan(secrets_dir: Path, evidence_dirs: Iterable[Path]) -> list[Leak]:
    """Every secret issued under `secrets_dir` found in a log, recording or span file."""
    needles = list(secrets_in(secrets_dir))
    sources = {source for _, source, _ in needles}
    leaks: list[Leak] = []
    for path in evidence_in(evidence_dirs):
        if path in sources:
            continue
        text = path.read_bytes()
        leaks += [Leak(kind, source, path) for kind, source, needle in needles if needle in text]
    return sorted(set(leaks), key=lambda leak: (str(leak.where), leak.kind))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    base = factory.getbasetemp()
    leaks = scan(base, [base, ROOT / "test-artifacts"])
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"a {leak.kind} from {leak.source} appears in {leak.where}" for leak in leaks]
        if reporter is not None:
            reporter.section("secrets in logs, recordings or spans", sep="!", red=True)
            for line in lines:
                reporter.line(line, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
