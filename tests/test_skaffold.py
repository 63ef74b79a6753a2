"""skaffold.yaml, checked by skaffold itself (built from the Go module proxy by
hack/devtools/build): every profile parses (`skaffold diagnose`), and what `skaffold render`
deploys is what `helm template` renders with the same values, the image skaffold built set."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures_kube import ROOT
from tests.test_chart_render import run_helm
from tests.test_operator_chart import CHART, documents, helm_bin

__all__ = ["helm_bin"]  # the fixture, re-used from the operator's chart tests

SKAFFOLD_YAML = ROOT / "skaffold.yaml"


def devtools() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "hack/devtools/build"), "--print-env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def skaffold_env(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment skaffold runs in: the pinned helm first on PATH, a private HOME whose
    skaffold config turns off telemetry, surveys and update checks, no proxies."""
    binary = devtools()["EC2_TERMINAL_SKAFFOLD"]
    if not os.access(binary, os.X_OK):
        pytest.fail(f"skaffold not found at {binary}: run hack/setup (hack/devtools/build)")
    home = tmp_path_factory.mktemp("skaffold-home")
    (home / ".skaffold").mkdir()
    (home / ".skaffold/config").write_text(
        yaml.safe_dump(
            {
                "global": {
                    "collect-metrics": False,
                    "update-check": False,
                    "survey": {"disable-prompt": True},
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        HOME=str(home),
        PATH=f"{Path(helm_bin).parent}:{env['PATH']}",
        SKAFFOLD_BINARY=binary,
        HELM_CACHE_HOME=str(home / "helm-cache"),
        HELM_CONFIG_HOME=str(home / "helm-config"),
        HELM_DATA_HOME=str(home / "helm-data"),
        KUBECONFIG=str(home / "no-cluster"),  # render must not need a cluster
    )
    return env


def skaffold(
    env: Mapping[str, str], *args: str, extra: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [env["SKAFFOLD_BINARY"], *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**env, **(extra or {})},
        check=False,
    )


PROFILES = ["", "kind", "remote", "observability", "kind,observability"]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "default")
def test_every_profile_parses(skaffold_env: dict[str, str], profile: str) -> None:
    done = skaffold(skaffold_env, "diagnose", "--yaml-only", *(["-p", profile] if profile else []))
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["apiVersion"] == "skaffold/v4beta14"
    (release,) = config["deploy"]["helm"]["releases"]
    assert Path(release["chartPath"]) == CHART
    if "kind" in profile:
        assert config["deploy"]["kubeContext"] == "kind-ec2-terminal"
    if profile == "remote":
        assert config["build"]["local"]["push"] is True
        assert release.get("valuesFiles", []) == []
    else:
        assert release["valuesFiles"] == [str(CHART / "values-dev.yaml")]
    if "observability" in profile:
        assert release["setValues"] == {"observability.enabled": "true"}
        forwarded = {p["resourceName"] for p in config["portForward"]}
        assert {"grafana", "jaeger-query", "prometheus", "ec2-terminal"} <= forwarded


def test_a_typo_in_skaffold_yaml_is_refused(skaffold_env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "skaffold.yaml"
    broken.write_text(SKAFFOLD_YAML.read_text().replace("    valuesFiles:", "    valueFiles:", 1))
    done = skaffold(skaffold_env, "diagnose", "--yaml-only", f"--filename={broken}")
    assert done.returncode != 0
    assert "valueFiles" in done.stderr


def test_the_build_follows_the_dockerfile_and_the_pins() -> None:
    config = yaml.safe_load(SKAFFOLD_YAML.read_text())
    (artifact,) = config["build"]["artifacts"]
    assert artifact["docker"]["dockerfile"] == "Dockerfile"
    args = artifact["docker"]["buildArgs"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The base images default to the Dockerfile's own defaults, overridable from the environment.
    for arg, variable in (
        ("NODE_IMAGE", "EC2_TERMINAL_NODE_IMAGE"),
        ("PYTHON_IMAGE", "EC2_TERMINAL_PYTHON_IMAGE"),
    ):
        default = re.search(rf"^ARG {arg}=(\S+)$", dockerfile, re.M)
        assert default is not None, arg
        assert args[arg] == f'{{{{default "{default.group(1)}" .{variable}}}}}'
    versions = (ROOT / "hack/versions.env").read_text()
    assert f"UV_VERSION={args['UV_VERSION']}\n" in versions
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert args["VERSION"] == version


def _normalized(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by kind, namespace and name; generated passwords replaced by their length."""
    out = {}
    for doc in docs:
        if doc["kind"] == "Secret" and "password" in doc.get("data", {}):
            doc["data"]["password"] = len(base64.b64decode(doc["data"]["password"]))
        meta = doc["metadata"]
        out[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return out


@pytest.mark.parametrize(
    ("profile", "flags"),
    [
        ("kind", []),
        ("kind,observability", ["--set=observability.enabled=true"]),
    ],
)
def test_render_is_what_helm_template_renders(
    skaffold_env: dict[str, str], helm_bin: str, profile: str, flags: list[str]
) -> None:
    done = skaffold(skaffold_env, "render", "--offline=true", "--digest-source=tag", "-p", profile)
    assert done.returncode == 0, done.stderr
    rendered = documents(done.stdout)
    images = {
        c["image"]
        for d in rendered
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("ec2-terminal")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    (image,) = images  # the operator and the worker run the image skaffold built
    repository, tag = image.rsplit(":", 1)
    assert repository == "ec2-terminal"
    helm = run_helm(
        helm_bin,
        "template",
        "ec2-terminal",
        str(CHART),
        "--namespace=ec2-terminal",
        f"--values={CHART / 'values-dev.yaml'}",
        f"--set=image.repository={repository}",
        f"--set=image.tag={tag}",
        *flags,
    )
    assert helm.returncode == 0, helm.stderr
    ours, theirs = _normalized(rendered), _normalized(documents(helm.stdout))
    assert sorted(ours) == sorted(theirs)
    for key, doc in theirs.items():
        assert ours[key] == doc, key


def test_the_remote_profile_installs_the_chart_defaults_with_the_pushed_image(
    skaffold_env: dict[str, str],
) -> None:
    done = skaffold(
        skaffold_env,
        "render",
        "--offline=true",
        "--digest-source=tag",
        "-p",
        "remote",
        "--default-repo=registry.example.com/team",
        extra={"EC2_TERMINAL_SESSION_DOMAIN": "term.example.com"},
    )
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    deploy = next(
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "ec2-terminal")
    )
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.example.com/team/ec2-terminal:")
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    assert env["EC2_TERMINAL_OPERATOR_SESSION_DOMAIN"] == "term.example.com"
    assert env["EC2_TERMINAL_OPERATOR_SESSION_IMAGE"] == container["image"]
    # The chart's defaults, not the development values.
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "--log-format=json" in container["args"]


def test_skaffold_is_the_pinned_release() -> None:
    binary = devtools()["EC2_TERMINAL_SKAFFOLD"]
    versions = (ROOT / "hack/versions.env").read_text()
    skaffold_version = re.search(r"^SKAFFOLD_VERSION=(\S+)$", versions, re.M)
    assert skaffold_version is not None
    assert Path(binary).parent.parent.name == f"skaffold-{skaffold_version.group(1)}"
    out = subprocess.run(
        [binary, "version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == skaffold_version.group(1)
