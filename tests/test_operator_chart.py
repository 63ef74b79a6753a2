"""The Helm chart: rendered from each ci/*-values.yaml, refused on typos, installed for real."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.network import IPBlock
from ec2_terminal_operator.policy import Toleration

from tests.fixtures_kube import KubeCluster, cluster_env, wait_for
from tests.fixtures_operator import (
    ROOT,
    OperatorFactory,
    exists,
    get_session,
    key_secret,
    patch_spec,
    session_manifest,
    wait_phase,
)

CHART = ROOT / "charts/ec2-terminal"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RENDERED = CHART / "ci/rendered"


@pytest.fixture(scope="module")
def helm_bin() -> str:
    """The pinned helm binary (no cluster needed to render)."""
    path = os.environ.get("EC2_TERMINAL_HELM") or cluster_env().get("EC2_TERMINAL_HELM", "")
    if not path or not Path(path).exists():
        pytest.fail("helm not found: run hack/setup (hack/cluster provides it)")
    return path


def render(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, "template", "ec2-terminal", str(CHART), "--namespace=ec2-terminal", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_chart_renders_as_recorded(helm_bin: str, values: Path) -> None:
    result = render(helm_bin, f"--values={values}")
    assert result.returncode == 0, result.stderr
    golden = RENDERED / f"{values.stem}.yaml"
    if os.environ.get("EC2_TERMINAL_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(result.stdout)
    # A template change shows up as a diff here; regenerate with EC2_TERMINAL_UPDATE_GOLDEN=1.
    assert result.stdout == golden.read_text()
    docs = documents(result.stdout)
    kinds = sorted({d["kind"] for d in docs})
    assert "Deployment" in kinds
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert deploy["spec"]["replicas"] == 1
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The operator accepts the settings the chart gives it (a malformed one stops it).
    env = {e["name"]: e["value"] for e in container["env"]}
    OperatorConfig.from_env(env)
    for doc in docs:
        for rule in doc.get("rules") or ():
            if "secrets" in rule["resources"]:
                # The operator may never enumerate Secrets.
                assert not {"list", "watch"} & set(rule["verbs"]), doc["metadata"]["name"]
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]


def _operator_config(helm: str, values: str) -> OperatorConfig:
    docs = documents(render(helm, f"--values={CHART / values}").stdout)
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    return OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]})


def test_the_charts_policy_values_reach_the_operator(helm_bin: str) -> None:
    default = _operator_config(helm_bin, "ci/default-values.yaml")
    assert default.pod_policy.allowed_images == ()
    assert default.ingress.session_domain is None
    assert not default.ingress.allow_shared_origin
    assert default.network.enabled
    assert default.network.egress_enabled
    # The worker's namespace defaults to the release namespace.
    assert default.network.health_check_namespace_selector == {
        "matchLabels": {"kubernetes.io/metadata.name": "ec2-terminal"}
    }
    hardened = _operator_config(helm_bin, "ci/hardened-values.yaml")
    assert hardened.ingress.session_domain == "term.example.com"
    assert hardened.ingress.session_tls
    assert hardened.ingress.allowed_hosts == ("*.apps.example.com",)
    assert hardened.ingress.class_name == "nginx"
    assert hardened.pod_policy.allowed_images == ("registry.example.com/ec2-terminal:*",)
    assert hardened.pod_policy.allowed_node_selectors == {"node-pool": ("terminals",)}
    assert hardened.pod_policy.allowed_tolerations == (
        Toleration(key="dedicated", value="terminals", effect="NoSchedule"),
    )
    assert not hardened.pod_policy.trust_ssh_auth_secrets
    assert hardened.network.ssh.blocks == (IPBlock("10.20.0.0/16"),)
    assert hardened.network.ssh.ports == (22, 2222)


def test_namespaced_values_grant_roles_only_in_watched_namespaces(helm_bin: str) -> None:
    result = render(helm_bin, f"--values={CHART / 'ci/namespaced-values.yaml'}")
    docs = documents(result.stdout)
    roles = [d for d in docs if d["kind"] == "Role"]
    assert {r["metadata"]["namespace"] for r in roles} == {"sessions"}
    cluster_roles = [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"]
    assert cluster_roles == ["ec2-terminal-framework"]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert "--namespace=sessions" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--set=operator.resyncSecond=3", "additional properties 'resyncSecond' not allowed"),
        ("--set=operator.logFormat=xml", "logFormat"),
        ("--set=watch.allNamespace=false", "additional properties 'allNamespace' not allowed"),
        ("--set=healthCheck.bannerTimout=3", "additional properties 'bannerTimout' not allowed"),
        ("--set=healthCheck.address=elastic", "address"),
        ("--set=redis.externalUrl=redis://:pw@host:6379", "externalUrl"),
        ("--set=ingress.allowedHosts={*}", "at '/ingress/allowedHosts/0'"),
        ("--set=policy.allowedImages={reg.example/x*}", "at '/policy/allowedImages/0'"),
        ("--set=ingress.sessionDomain=Term.Example", "at '/ingress/sessionDomain'"),
    ],
)
def test_schema_refuses_typos(helm_bin: str, flag: str, message: str) -> None:
    result = render(helm_bin, flag)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = stripped.split(":", 1)[0]
        # Resource quantities, label selectors and address blocks are described by their
        # parent's comment.
        parents = {k for _, k in stack}
        if not parents & {"resources", "cidrs"} and not any(
            k.endswith("Selector") for k in parents
        ):
            assert lines[i - 1].strip().startswith("#"), f"values.yaml:{i + 1}: {line}"
        stack.append((indent, key))


def install_watching(cluster: KubeCluster, release: str, namespace: str, *flags: str) -> None:
    """Installs the chart in `namespace`, watching that namespace only."""
    cluster.helm(
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--set=watch.allNamespaces=false",
        f"--set=watch.namespaces={{{namespace}}}",
        # The test cluster has no volume provisioner: Redis keeps its data in an emptyDir.
        "--set=redis.persistence.enabled=false",
        "--timeout=90s",
        *flags,
    )


def _sa_kubeconfig(cluster: KubeCluster, namespace: str, sa: str, path: Path) -> Path:
    entry = {
        "server": cluster.server,
        "certificate-authority-data": base64.b64encode(cluster.ca_certificate()).decode(),
    }
    token = cluster.kubectl("create", "token", sa, "--duration=1h", namespace=namespace).strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": entry}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": sa}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.mark.cluster
@pytest.mark.slow
def test_chart_installs_and_its_rbac_is_enough_for_the_operator(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_factory: OperatorFactory,
    tmp_path: Path,
) -> None:
    release = f"r{namespace}"
    install_watching(kube_cluster, release, namespace, "--wait")
    try:
        fullname = f"{release}-ec2-terminal"
        deploy = kube_cluster.kubectl_json("get", "deployment", fullname, namespace=namespace)
        assert deploy["spec"]["strategy"]["type"] == "Recreate"
        as_sa = f"--as=system:serviceaccount:{namespace}:{fullname}"
        can = kube_cluster.kubectl(
            "auth", "can-i", "list", "secrets", as_sa, namespace=namespace, check=False
        )
        assert can.strip() == "no"
        can = kube_cluster.kubectl(
            "auth", "can-i", "create", "pods", as_sa, namespace="default", check=False
        )
        assert can.strip() == "no"

        # The operator, run locally but as the chart's ServiceAccount, does its whole job.
        kubeconfig = _sa_kubeconfig(kube_cluster, namespace, fullname, tmp_path / "sa.kubeconfig")
        operator_factory(namespace, kubeconfig=kubeconfig)
        kube_cluster.apply(key_secret(), namespace=namespace)
        kube_cluster.apply(
            session_manifest("rbac", exposure={"type": "Ingress"}), namespace=namespace
        )
        ts = wait_phase(kube_cluster, namespace, "rbac", "Ready")
        assert ts["status"]["ingressName"] == "rbac"
        assert exists(kube_cluster, namespace, "networkpolicy", "rbac")
        assert exists(kube_cluster, namespace, "lease", "rbac-activity")
        # Rotating the token needs patch on Secrets.
        patch_spec(kube_cluster, namespace, "rbac", tokenRotation="1")
        wait_for(
            lambda: (
                get_session(kube_cluster, namespace, "rbac")["status"].get("tokenRotation") == "1"
            ),
            message="token rotated with the chart's RBAC",
        )
        kube_cluster.kubectl("delete", "ts", "rbac", "--timeout=60s", namespace=namespace)
        wait_for(lambda: not exists(kube_cluster, namespace, "pod", "rbac"), message="pod gone")
    finally:
        kube_cluster.helm("uninstall", release, f"--namespace={namespace}", "--wait", check=False)
