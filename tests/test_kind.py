"""hack/kind.yaml and hack/kind-up, as far as they run here. kind itself (built by
hack/devtools/build) decodes and validates the configuration; creating the cluster then needs
kind's node image, which no registry here serves, so that is where a run stops: hack/kind-up's
own steps before it (its arguments, the image archive) are checked, and nothing is left behind."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.fixtures_kube import ROOT
from tests.test_skaffold import devtools

KIND_YAML = ROOT / "hack/kind.yaml"
KIND_UP = ROOT / "hack/kind-up"
NODE_IMAGE_UNREACHABLE = "failed to pull image"


@pytest.fixture(scope="module")
def kind_bin() -> str:
    binary = devtools()["EC2_TERMINAL_KIND"]
    if not os.access(binary, os.X_OK):
        pytest.fail(f"kind not found at {binary}: run hack/setup (hack/devtools/build)")
    if shutil.which("podman") is None:
        pytest.fail("podman not found: run hack/setup (kind's provider here)")
    return binary


def kind_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["KIND_EXPERIMENTAL_PROVIDER"] = "podman"
    return env


def create(kind: str, config: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kind, "create", "cluster", f"--name={name}", f"--config={config}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=kind_env(),
        check=False,
    )


def clusters(kind: str) -> list[str]:
    done = subprocess.run(
        [kind, "get", "clusters"],
        capture_output=True,
        text=True,
        timeout=60,
        env=kind_env(),
        check=True,
    )
    return done.stdout.split()


def test_the_node_is_ready_for_ingress_nginx_on_loopback_only() -> None:
    config = yaml.safe_load(KIND_YAML.read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert (
        config["name"] == "ec2-terminal"
    )  # skaffold.yaml's kind profile: context kind-ec2-terminal
    (node,) = config["nodes"]
    assert node["labels"] == {"ingress-ready": "true"}
    assert node["extraPortMappings"] == [
        {"containerPort": port, "hostPort": port, "listenAddress": "127.0.0.1", "protocol": "TCP"}
        for port in (80, 443)
    ]


def test_kind_accepts_the_config_and_stops_only_at_the_node_image(kind_bin: str) -> None:
    name = f"ec2t-{secrets.token_hex(3)}"
    done = create(kind_bin, KIND_YAML, name)
    assert done.returncode != 0
    # Decoded and validated (both come before the node image): the pull is what fails.
    assert NODE_IMAGE_UNREACHABLE in done.stderr, done.stderr
    assert "kindest/node" in done.stderr
    assert name not in clusters(kind_bin)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    labels:", "    lables:"), "field lables not found in type v1alpha4.Node"),
        (("hostPort: 80\n", "hostPort: 80000\n"), "invalid hostPort"),
        (("role: control-plane", "role: master"), '"master" is not a valid node role'),
    ],
)
def test_kind_refuses_a_broken_config_before_pulling(
    kind_bin: str, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    broken = tmp_path / "kind.yaml"
    text = KIND_YAML.read_text()
    assert edit[0] in text
    broken.write_text(text.replace(edit[0], edit[1], 1))
    done = create(kind_bin, broken, f"ec2t-{secrets.token_hex(3)}")
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert NODE_IMAGE_UNREACHABLE not in done.stderr


def kind_up(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIND_UP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kind_env(),
        check=False,
    )


def test_kind_up_prints_its_usage() -> None:
    done = kind_up("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("hack/kind-up [--provider docker|podman]")
    assert "--ssh-target" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown argument: --bogus"),
        (["--provider"], "--provider needs a value"),
        (["--provider", "lxc"], "--provider must be docker or podman, not lxc"),
        (["--name", "Not_A_Label"], "--name must be a DNS label"),
        (
            ["--image-archive", "/nonexistent.tar"],
            "--image-archive /nonexistent.tar: no such readable file",
        ),
        (
            ["--ssh-target", "ec2-user@10.0.0.5"],
            "--ssh-target, --ssh-key and --host-key-fingerprint go together",
        ),
        (
            [
                "--ssh-target",
                "10.0.0.5",
                "--ssh-key",
                "/etc/hostname",
                "--host-key-fingerprint",
                "SHA256:" + "A" * 43,
            ],
            "--ssh-target must be USER@HOST or USER@HOST:PORT",
        ),
        (
            [
                "--ssh-target",
                "u@h",
                "--ssh-key",
                "/etc/hostname",
                "--host-key-fingerprint",
                "MD5:aa",
            ],
            "--host-key-fingerprint must be SHA256:",
        ),
        (
            [
                "--ssh-target",
                "u@h",
                "--ssh-key",
                "/nonexistent",
                "--host-key-fingerprint",
                "SHA256:" + "A" * 43,
            ],
            "--ssh-key /nonexistent: no such readable file",
        ),
    ],
)
def test_kind_up_refuses_bad_arguments_before_doing_anything(args: list[str], message: str) -> None:
    done = kind_up(*args)
    assert done.returncode == 2
    assert f"hack/kind-up: {message}" in done.stderr
    assert "==>" not in done.stderr  # nothing built, created or installed


@pytest.mark.slow
def test_kind_up_builds_the_image_archive_then_stops_at_the_node_image(kind_bin: str) -> None:
    name = f"ec2t-{secrets.token_hex(3)}"
    done = kind_up("--provider", "podman", "--name", name, timeout=900)
    assert done.returncode == 1
    assert done.stdout == ""
    steps = [line for line in done.stderr.splitlines() if line.startswith("==> ")]
    archive = Path(
        steps[0].split("building the image into ", 1)[1].split(" (hack/image --save)")[0]
    )
    assert steps[-2:] == [
        f"==> image archive: {archive}",
        f"==> creating kind cluster {name} (podman) from hack/kind.yaml",
    ]
    assert NODE_IMAGE_UNREACHABLE in done.stderr
    assert "hack/kind-up: kind could not create the cluster" in done.stderr
    assert name not in clusters(kind_bin)

    # The archive kind would load: an OCI image layout of the versioned tag.
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    refs = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        for m in index["manifests"]
    ]
    assert any(r.endswith("ec2-terminal:0.1.0") for r in refs), refs

    # Given an archive, nothing is built.
    again = kind_up(
        "--provider", "podman", "--name", name, "--image-archive", str(archive), timeout=300
    )
    assert again.returncode == 1
    assert "building the image" not in again.stderr
    assert f"==> image archive: {archive}" in again.stderr
    assert name not in clusters(kind_bin)
