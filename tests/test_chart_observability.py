"""The chart's observability stack is k8s/observability: the chart renders those very files
(charts/ec2-terminal/files/observability links to them), and what it renders equals what
`kubectl kustomize k8s/observability` renders, but for the documented changes (namespace,
cluster-scoped names, labels, ConfigMap names and checksums, the default-deny policy in a
shared namespace, the generated Grafana Secret)."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures_kube import ROOT, cluster_env
from tests.test_chart_render import run_helm
from tests.test_operator_chart import CHART, documents, helm_bin

__all__ = ["helm_bin"]  # the fixture, re-used from the operator's chart tests

STACK = ROOT / "k8s/observability"
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding")


@pytest.fixture(scope="module")
def kubectl_bin() -> str:
    """The pinned kubectl (its built-in kustomize renders the kustomization)."""
    path = cluster_env().get("EC2_TERMINAL_KUBECTL", "")
    if not path or not Path(path).exists():
        pytest.fail("kubectl not found: run hack/setup (hack/cluster provides it)")
    return path


def kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


def chart_stack(helm: str, *flags: str, chart: Path = CHART) -> list[dict[str, Any]]:
    """The stack's objects as the chart renders them (observability on, nothing else)."""
    result = run_helm(
        helm,
        "template",
        "ec2-terminal",
        str(chart),
        "--namespace=ec2-terminal",
        "--set=observability.enabled=true",
        "--set=healthCheck.enabled=false",
        *flags,
    )
    assert result.returncode == 0, result.stderr
    # The kustomization labels every object of the stack (and the chart keeps its labels).
    part_of = ("app.kubernetes.io/part-of", "ec2-terminal-observability")
    return [d for d in documents(result.stdout) if part_of in d["metadata"]["labels"].items()]


def generated_names(directory: Path = STACK) -> set[str]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return {g["name"] for g in kustomization["configMapGenerator"]}


def pod_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
        return dict(doc["spec"]["template"])
    return None


def normalize(doc: dict[str, Any], namespace: str, generated: set[str]) -> dict[str, Any]:
    """The object with what the chart may change taken out (each checked by the callers)."""
    doc = copy.deepcopy(doc)
    meta = doc["metadata"]
    meta.pop("namespace", None)
    meta.pop("labels", None)
    if doc["kind"] in CLUSTER_SCOPED:
        meta["name"] = meta["name"].removesuffix(f"-{namespace}")
    if doc["kind"] == "ClusterRoleBinding":
        doc["roleRef"]["name"] = doc["roleRef"]["name"].removesuffix(f"-{namespace}")
        for subject in doc["subjects"]:
            subject.pop("namespace", None)

    def base(name: str) -> str:
        stripped = re.sub(r"-[a-z0-9]{10}$", "", name)
        return stripped if stripped in generated else name

    if doc["kind"] == "ConfigMap":
        meta["name"] = base(meta["name"])
    pod = pod_of(doc)
    if pod is not None:
        pod["metadata"].pop("labels", None)
        annotations = {
            k: v
            for k, v in pod["metadata"].get("annotations", {}).items()
            if not k.startswith("checksum/")
        }
        pod["metadata"].pop("annotations", None)
        if annotations:
            pod["metadata"]["annotations"] = annotations
        for volume in pod["spec"].get("volumes", []):
            if "configMap" in volume:
                volume["configMap"]["name"] = base(volume["configMap"]["name"])
        doc["spec"]["template"] = pod
    return doc


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def compare(
    kustomized: list[dict[str, Any]],
    charted: list[dict[str, Any]],
    namespace: str,
    generated: set[str],
) -> set[tuple[str, str]]:
    """Asserts the two agree object by object; returns what only the chart has."""
    ours = {key(normalize(d, namespace, generated)): d for d in charted}
    theirs = {key(normalize(d, "", generated)): d for d in kustomized if d["kind"] != "Namespace"}
    for k, their in theirs.items():
        if k not in ours:
            continue
        our = ours[k]
        assert normalize(our, namespace, generated) == normalize(their, "", generated), k
        # Labels: the files' (and the kustomization's) all kept, the chart's added.
        their_labels = their["metadata"].get("labels", {})
        assert their_labels.items() <= our["metadata"]["labels"].items(), k
        assert our["metadata"]["labels"]["app.kubernetes.io/instance"] == "ec2-terminal"
        if our["kind"] not in CLUSTER_SCOPED:
            assert our["metadata"]["namespace"] == namespace, k
        pod = pod_of(their)
        if pod is not None:
            assert pod["metadata"]["labels"].items() <= pod_of(our)["metadata"]["labels"].items()  # type: ignore[index]
    missing = set(theirs) - set(ours)
    assert missing <= {("NetworkPolicy", "default-deny-ingress")}
    return set(ours) - set(theirs)


def test_the_chart_renders_the_kustomization_in_the_release_namespace(
    helm_bin: str, kubectl_bin: str
) -> None:
    charted = chart_stack(helm_bin)
    extra = compare(kustomize(kubectl_bin, STACK), charted, "ec2-terminal", generated_names())
    assert extra == {("Secret", "grafana-admin")}
    names = {key(d) for d in charted}
    # Sharing the release namespace, default-deny would cut off ec2-terminal's own pods.
    assert ("NetworkPolicy", "default-deny-ingress") not in names
    assert ("ClusterRole", "ec2-terminal-otel-collector-ec2-terminal") in names
    binding = next(
        d
        for d in charted
        if key(d) == ("ClusterRoleBinding", "ec2-terminal-prometheus-ec2-terminal")
    )
    assert binding["roleRef"]["name"] == "ec2-terminal-prometheus-ec2-terminal"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus", "namespace": "ec2-terminal"}
    ]


def test_a_namespace_of_its_own_keeps_the_default_deny_policy(
    helm_bin: str, kubectl_bin: str
) -> None:
    charted = chart_stack(helm_bin, "--set=observability.namespace=monitoring")
    compare(kustomize(kubectl_bin, STACK), charted, "monitoring", generated_names())
    names = {key(d) for d in charted}
    assert ("NetworkPolicy", "default-deny-ingress") in names
    assert all(
        d["metadata"].get("namespace") == "monitoring"
        for d in charted
        if d["kind"] not in CLUSTER_SCOPED
    )
    assert ("ClusterRole", "ec2-terminal-otel-collector-monitoring") in names


def test_image_overrides_follow_kustomize_images(
    helm_bin: str, kubectl_bin: str, tmp_path: Path
) -> None:
    overrides = [
        {"name": "grafana/grafana", "newName": "mirror.example.com/grafana"},
        {"name": "prom/prometheus", "newTag": "v3.16.1"},
        {
            "name": "otel/opentelemetry-collector-contrib",
            "newName": "mirror.example.com/otel",
            "digest": "sha256:" + "a" * 64,
        },
    ]
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [os.path.relpath(STACK, overlay)], "images": overrides})
    )
    flags = []
    for i, o in enumerate(overrides):
        flags += [f"--set=observability.images[{i}].{k}={v}" for k, v in o.items()]
    charted = {key(d): d for d in chart_stack(helm_bin, *flags)}
    images = {}
    for doc in kustomize(kubectl_bin, overlay):
        pod = pod_of(doc)
        if pod is not None:
            ours = pod_of(charted[key(doc)])
            assert ours is not None
            assert [c["image"] for c in ours["spec"]["containers"]] == [
                c["image"] for c in pod["spec"]["containers"]
            ]
            images[doc["metadata"]["name"]] = pod["spec"]["containers"][0]["image"]
    assert images == {
        "grafana": "mirror.example.com/grafana:12.3.0",
        "prometheus": "prom/prometheus:v3.16.1",
        "otel-collector": "mirror.example.com/otel@sha256:" + "a" * 64,
        "jaeger": "jaegertracing/jaeger:2.13.0",
    }


def copied_chart(tmp_path: Path) -> Path:
    """The chart with a copy of the stack's files in place of the link, to change them."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, symlinks=True)
    link = chart / "files/observability"
    assert link.is_symlink()
    link.unlink()
    shutil.copytree(STACK, link)
    return chart


def test_a_changed_config_file_changes_its_checksum_and_nothing_else(
    helm_bin: str, tmp_path: Path
) -> None:
    chart = copied_chart(tmp_path)
    before = {
        key(d): d
        for d in chart_stack(helm_bin, "--set=observability.grafana.adminPassword=x", chart=chart)
    }
    config = chart / "files/observability/prometheus/prometheus.yml"
    config.write_text(config.read_text().replace("scrape_interval: 15s", "scrape_interval: 30s"))
    after = {
        key(d): d
        for d in chart_stack(helm_bin, "--set=observability.grafana.adminPassword=x", chart=chart)
    }
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {("ConfigMap", "prometheus-config"), ("Deployment", "prometheus")}
    annotations = [
        d["spec"]["template"]["metadata"]["annotations"]
        for d in (before[("Deployment", "prometheus")], after[("Deployment", "prometheus")])
    ]
    assert (
        annotations[0]["checksum/prometheus-config"] != annotations[1]["checksum/prometheus-config"]
    )
    assert (
        "scrape_interval: 30s"
        in after[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"]
    )


def test_a_kustomization_feature_the_chart_does_not_follow_stops_the_render(
    helm_bin: str, tmp_path: Path
) -> None:
    chart = copied_chart(tmp_path)
    kustomization = chart / "files/observability/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "commonAnnotations:\n  team: x\n")
    result = run_helm(
        helm_bin,
        "template",
        "x",
        str(chart),
        "--set=observability.enabled=true",
    )
    assert result.returncode != 0
    assert (
        "commonAnnotations is not followed by the chart's templates/observability.yaml"
        in result.stderr
    )


def test_the_grafana_password_is_generated(helm_bin: str) -> None:
    def password() -> bytes:
        secret = next(d for d in chart_stack(helm_bin) if key(d) == ("Secret", "grafana-admin"))
        return base64.b64decode(secret["data"]["password"])

    first, second = password(), password()
    assert first != second
    assert len(first) == 32
    # The Deployment reads it from that Secret, as with the kustomization.
    grafana = next(d for d in chart_stack(helm_bin) if key(d) == ("Deployment", "grafana"))
    volumes = {v["name"]: v for v in grafana["spec"]["template"]["spec"]["volumes"]}
    assert volumes["admin"]["secret"]["secretName"] == "grafana-admin"


def test_the_chart_reads_the_stack_through_a_link() -> None:
    link = CHART / "files/observability"
    assert link.is_symlink()
    assert os.readlink(link) == "../../../k8s/observability"
