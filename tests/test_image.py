"""The container image: built from the Dockerfile with podman on the local Debian base, and run."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures_kube import KubeCluster
from tests.fixtures_operator import ready_session
from tests.fixtures_sshd import Sshd
from tests.support import free_port, poll
from tests.wsclient import open_client

ROOT = Path(__file__).resolve().parents[1]
NAME = "localhost/ec2-terminal"
# A cold build (debootstrap, then apt, npm and PyPI downloads) on a busy machine; a warm one takes
# seconds. The build runs in a session fixture, outside the tests' own timeouts.
BUILD_TIMEOUT = 3600
UID = 10001
RECORDINGS = "/var/lib/ec2-terminal/recordings"
# What `ec2-terminal --help` must list; each subcommand it lists is run with --help. The worker
# and health-check roles join when their subcommands exist: add "worker" and "health-check".
SUBCOMMANDS = {"serve", "demo", "link", "worker", "health-check"}
# What the session pods' securityContext asks of the runtime, beside the image's own user.
RESTRICTED = ["--read-only", "--cap-drop=all", "--security-opt=no-new-privileges"]
# What a process writes to under a read-only root, as the pod's emptyDir volumes provide it.
SCRATCH = ["--tmpfs", "/tmp", "--volume", RECORDINGS]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300, func_only=True)]


def podman_command() -> list[str]:
    """podman as root, as hack/image runs it (through sudo when the tests run as another user)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run hack/setup (it installs podman and runc)")
    return ["podman"] if os.geteuid() == 0 else ["sudo", "-n", "podman"]


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run podman; fail the test with its output if it fails and `check` is set."""
    result = subprocess.run(
        [*podman_command(), *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr}")
    return result


def run_flags(*extra: str) -> list[str]:
    """hack/lib.sh's PODMAN_FLAGS (runc, limits), the restricted settings, then `extra`."""
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    return ["--runtime", "runc", *limits, *RESTRICTED, *extra]


def hack(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a hack/ script (stdout: what it prints, stderr: its log), or fail with its log."""
    try:
        result = subprocess.run(
            [str(ROOT / "hack" / script), *args],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hack/{script} took more than {BUILD_TIMEOUT}s:\n{exc.stderr!r}")
    if result.returncode != 0:
        pytest.fail(f"hack/{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@dataclass(frozen=True)
class Image:
    """hack/image's tag, and the image it named (runs use the id: another checkout may retag)."""

    tag: str
    id: str


@pytest.fixture(scope="session")
def image() -> Image:
    """hack/image's image, built (or found up to date) once per session."""
    podman_command()
    tag = hack("image").stdout.strip()
    return Image(tag, podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip())


@pytest.fixture(scope="session")
def base_image() -> str:
    """hack/base-image's Debian image, which hack/image builds on."""
    podman_command()
    return hack("base-image").stdout.strip()


@dataclass
class Container:
    """A detached container of the image."""

    name: str

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *argv, check=False)

    def process_status(self, field: str) -> list[str]:
        """A field of the main process's /proc status, read from the host."""
        pid = podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout.strip()
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(.*)$", status, re.MULTILINE)
        assert match, f"no {field} in /proc/{pid}/status"
        return match.group(1).split()


StartContainer = Callable[..., Container]


@pytest.fixture
def start(image: Image) -> Iterator[StartContainer]:
    """`start(*run_flags, command=(...))`: a detached container, removed after the test."""
    names: list[str] = []

    def run(*flags: str, command: tuple[str, ...] = ()) -> Container:
        name = f"ec2-terminal-test-{secrets.token_hex(4)}"
        names.append(name)
        podman("run", "--detach", "--name", name, *run_flags(*flags), image.id, *command)
        return Container(name)

    yield run
    for name in names:
        podman("rm", "--force", "--volumes", "--time", "5", name, check=False)


def run_once(
    image: Image, *argv: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a throwaway container of the image, without network."""
    return podman(
        "run", "--rm", "--network", "none", *run_flags(*flags), image.id, *argv, check=False
    )


def secrets_dir(directory: Path, files: dict[str, str]) -> Path:
    """A directory to mount read-only at /secrets, its files readable by the container's user.

    The tests' temporary directory (mode 0700) keeps other users of this machine away; inside
    the container the mount is reached without its host parents.
    """
    directory.mkdir(mode=0o755)
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o444)
    return directory


def healthy(url: str, container: Container) -> None:
    """Wait until `url` answers 200; fail with the container's log."""
    try:
        poll(
            lambda: httpx.get(url, timeout=1, trust_env=False).status_code == 200,
            timeout=30,
            what=f"{url} to answer 200",
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}\ncontainer log:\n{container.logs()}")


def test_image_runs_as_10001_with_labels_and_no_entrypoint(image: Image) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image.id).stdout)
    assert config["User"] == f"{UID}:{UID}"
    assert not config.get("Entrypoint"), "each role is a command; an entrypoint would prefix it"
    assert config["Cmd"] == ["ec2-terminal", "serve"]
    labels = config["Labels"]
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert labels["org.opencontainers.image.version"] == tomllib.load(f)["project"]["version"]
    assert image.tag == f"{NAME}:{labels['org.opencontainers.image.version']}"
    assert labels["org.opencontainers.image.title"] == "ec2-terminal"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    created = labels["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)
    dev = podman("image", "inspect", "--format", "{{.Id}}", f"{NAME}:dev").stdout.strip()
    assert dev == image.id, "hack/image tags the same image :dev"


def archive_json(tar: tarfile.TarFile, name: str) -> Any:
    """A JSON member of an OCI archive."""
    member = tar.extractfile(name)
    assert member is not None, f"no {name} in the archive"
    return json.load(member)


def test_rerun_builds_nothing_and_saves_an_oci_archive(image: Image, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    rerun = hack("image", "--save", str(archive))
    assert rerun.stdout.strip() == image.tag
    assert f"{image.tag} is up to date" in rerun.stderr, rerun.stderr
    with tarfile.open(archive) as tar:
        assert archive_json(tar, "oci-layout")["imageLayoutVersion"] == "1.0.0"
        (entry,) = archive_json(tar, "index.json")["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == image.tag
        manifest = archive_json(tar, "blobs/" + entry["digest"].replace(":", "/"))
    assert manifest["config"]["digest"] == f"sha256:{image.id}"
    assert len(manifest["layers"]) >= 4, "base, Python, dependencies and project layers"


def test_runtime_has_no_compiler_cache_source_or_setuid_file(image: Image) -> None:
    script = r"""
        for tool in gcc cc c++ make uv pip pip3 npm node git; do command -v $tool; done
        ls -d /src /opt/uv /root/.cache /root/.npm 2>/dev/null
        find /var/lib/apt/lists /var/cache/apt -type f ! -name lock
        find / -xdev -type f \( -perm -4000 -o -perm -2000 \)
        find /opt/ec2-terminal -xdev ! -user root -o -perm -o+w ! -type l
    """
    result = run_once(image, "sh", "-c", script, flags=("--user", "0"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"found in the runtime image:\n{result.stdout}"


def test_build_context_holds_only_what_the_build_copies(base_image: str, tmp_path: Path) -> None:
    # The checkout this runs in has the host's build products that .dockerignore keeps out.
    for product in (".venv", "web/node_modules", "app/static/dist"):
        assert (ROOT / product).exists(), f"{product} is missing: run hack/setup"
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text(f"FROM {base_image}\nCOPY . /context\n")
    tag = f"localhost/ec2-terminal-context-test:{secrets.token_hex(4)}"
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    podman("build", "--runtime", "runc", *limits, "--pull=never", "-q", "-t", tag,
           "-f", str(containerfile), str(ROOT), timeout=300)  # fmt: skip
    try:
        listing = podman("run", "--rm", "--runtime", "runc", *limits, tag,
                         "find", "/context", "-mindepth", "1").stdout  # fmt: skip
    finally:
        podman("rmi", "--force", tag, check=False)
    paths = {p.removeprefix("/context/") for p in listing.split()}
    top = {p for p in paths if "/" not in p}
    assert top == {"pyproject.toml", "uv.lock", "README.md", "app", "operator", "web"}
    leaked = [p for p in paths if re.search(r"(^|/)(node_modules|dist|__pycache__)(/|$)|\.pyc$", p)]
    assert leaked == []
    assert {"web/package-lock.json", "web/src", "app/static/index.html"} <= paths


def test_default_command_serves_healthz_as_10001_on_a_read_only_root(
    start: StartContainer, tmp_path: Path
) -> None:
    mount = secrets_dir(tmp_path / "secrets", {"token": secrets.token_urlsafe(24)})
    port = free_port()
    container = start(
        *SCRATCH,
        "--publish", f"127.0.0.1:{port}:8000",
        "--volume", f"{mount}:/secrets:ro",
        "--env", "EC2_TERMINAL_TOKEN_FILE=/secrets/token",
    )  # fmt: skip
    healthy(f"http://127.0.0.1:{port}/healthz", container)
    bundle = httpx.get(f"http://127.0.0.1:{port}/static/dist/terminal.js", trust_env=False)
    assert bundle.status_code == 200
    assert len(bundle.content) > 10_000, "the front-end bundle is in the image"

    assert container.process_status("Uid") == [str(UID)] * 4
    assert container.process_status("Gid") == [str(UID)] * 4
    assert container.process_status("CapEff") == ["0000000000000000"]
    assert container.process_status("NoNewPrivs") == ["1"]
    write = "import sys; open(sys.argv[1], 'w').write('x')"
    refused = container.exec("python3", "-c", write, "/opt/ec2-terminal/x")
    assert "Read-only file system" in refused.stderr
    for writable in ("/tmp/x", f"{RECORDINGS}/x"):
        assert container.exec("python3", "-c", write, writable).returncode == 0, writable


@pytest.mark.parametrize(
    "command",
    [["ec2-terminal", "--help"], ["ec2-terminal-operator", "--help"]],
    ids=["ec2-terminal", "operator"],
)
def test_role_command_prints_help(image: Image, command: list[str]) -> None:
    result = run_once(image, *command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {command[0]}")


def test_every_subcommand_prints_help(image: Image) -> None:
    usage = run_once(image, "ec2-terminal", "--help").stdout
    listed = re.search(r"\{([\w,-]+)\}", usage)
    assert listed, f"no subcommands in:\n{usage}"
    subcommands = set(listed.group(1).split(","))
    missing = SUBCOMMANDS - subcommands
    assert not missing, f"ec2-terminal lists no {', '.join(sorted(missing))}:\n{usage}"
    for sub in sorted(subcommands):
        result = run_once(image, "ec2-terminal", sub, "--help")
        assert result.returncode == 0, f"{sub} --help: {result.stderr}"
        assert result.stdout.startswith(f"usage: ec2-terminal {sub}"), result.stdout


@pytest.mark.anyio
async def test_session_from_the_container_runs_a_shell_on_sshd(
    start: StartContainer, sshd: Sshd, tmp_path: Path
) -> None:
    token = secrets.token_urlsafe(24)
    mount = secrets_dir(
        tmp_path / "secrets",
        {
            "token": token,
            "key": sshd.client_key_path.read_text(),
            "known_hosts": sshd.known_hosts_path.read_text(),
        },
    )
    port = free_port()
    # The host's network, so that the server reaches sshd on 127.0.0.1 (and listens there only).
    container = start(
        *SCRATCH,
        "--network", "host",
        "--volume", f"{mount}:/secrets:ro",
        command=(
            "ec2-terminal", "serve",
            "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--token-file", "/secrets/token",
            "--host", sshd.host, "--port", str(sshd.port), "--user", sshd.user,
            "--key-file", "/secrets/key",
            "--host-key-policy", "known-hosts", "--known-hosts", "/secrets/known_hosts",
            "--recordings-dir", RECORDINGS,
        ),
    )  # fmt: skip
    healthy(f"http://127.0.0.1:{port}/readyz", container)

    client = await open_client(f"http://127.0.0.1:{port}/", token)
    await client.hello(80, 24)
    await client.until_connected()
    assert client.statuses[-1]["host_key_sha256"] == sshd.host_key_sha256
    await client.send_input("echo $((6*7))\r")
    await client.until(lambda c: re.search(r"[\r\n]42\r\n", c.text) is not None)
    await client.send_input("exit\r")
    await client.until(lambda c: c.exit is not None)
    await client.until_closed()

    listing = container.exec("ls", "-ln", RECORDINGS).stdout
    assert re.search(rf"^-\S+ +\d+ +{UID} +{UID} .*\.cast$", listing, re.MULTILINE), listing
    assert token not in container.logs(), "the access token leaked into the server log"


@pytest.mark.cluster
def test_operator_from_the_image_makes_a_session_ready(
    image: Image,
    start: StartContainer,
    kube_cluster: KubeCluster,
    terminalsession_crd: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    # The admin kubeconfig with its certificates inlined, as a ServiceAccount's would be mounted.
    kubeconfig = kube_cluster.kubectl("config", "view", "--flatten", "--minify")
    mount = secrets_dir(tmp_path / "secrets", {"kubeconfig": kubeconfig})
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    container = start(
        "--tmpfs", "/tmp",
        "--network", "host",
        "--volume", f"{mount}:/secrets:ro",
        "--env", "KUBECONFIG=/secrets/kubeconfig",
        command=(
            "ec2-terminal-operator", f"--namespace={namespace}", f"--liveness={liveness}",
            "--resync-seconds=1", "--log-format=plain", f"--session-image={image.tag}",
        ),
    )  # fmt: skip
    healthy(liveness, container)
    try:
        ready_session(kube_cluster, namespace, "from-image")
        pod = kube_cluster.kubectl_json("get", "pod", "from-image", namespace=namespace)
        assert pod["spec"]["containers"][0]["image"] == image.tag
        assert pod["spec"]["containers"][0]["securityContext"]["runAsUser"] == UID
    finally:
        # While the operator runs, so that it releases the session's finalizer.
        kube_cluster.kubectl(
            "delete", "ts", "--all", "--wait=true", "--timeout=60s",
            namespace=namespace, check=False,
        )  # fmt: skip
    assert "Traceback" not in container.logs(), container.logs()
