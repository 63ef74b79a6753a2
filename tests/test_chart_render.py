"""The whole chart rendered (no cluster): lint, labels, one image, the schema, the wiring to the
observability stack, the `helm test` hooks and NOTES.txt. The API server's verdict on the same
objects: tests/test_chart_install.py."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ec2_terminal_operator import resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import Session, parse_session

from app.telemetry import PodIdentity
from tests.fixtures_kube import ROOT
from tests.fixtures_operator import session_manifest
from tests.test_operator_chart import CHART, documents, helm_bin, render

__all__ = ["helm_bin"]  # the fixture, re-used from the operator's chart tests

# Every values file the tests render and install: each ci/*-values.yaml, and the development
# values of kind and skaffold (with a fixed Redis password, as the ci files have).
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DEV_VALUES = CHART / "values-dev.yaml"
VALUES = [*CI_VALUES, DEV_VALUES]
FIXED_PASSWORD = "--set=redis.auth.password=rendered-in-ci-only"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet", "Job")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs helm (no cluster) and returns what it did."""
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


def values_id(path: Path) -> str:
    return path.stem


def rendered(helm: str, *flags: str) -> list[dict[str, Any]]:
    result = render(helm, *flags)
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_template(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload (a CronJob's through its job template), else None."""
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"])
    if doc["kind"] in WORKLOADS:
        return dict(doc["spec"]["template"])
    return None


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        pod = pod_template(doc)
        if pod is not None:
            for container in pod["spec"]["containers"]:
                yield doc["metadata"]["name"], container


def project_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Containers running the project's own commands (not Redis, not the observability stack)."""
    return [
        (name, c)
        for name, c in containers(docs)
        if c.get("command", [""])[0] in ("ec2-terminal", "ec2-terminal-operator", "python3")
    ]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def web_session() -> Session:
    """A TerminalSession as the operator parses it, to build its pod as the chart configures."""
    manifest = session_manifest("web")
    manifest["metadata"] |= {"namespace": "team", "uid": "u", "generation": 1}
    return parse_session(manifest)


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    deploy = by_name(docs)[("Deployment", "ec2-terminal")]
    return env_of(deploy["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_lint_passes_strictly(helm_bin: str, values: Path) -> None:
    result = run_helm(
        helm_bin,
        "lint",
        "--strict",
        str(CHART),
        f"--values={values}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key twice in one mapping (PyYAML keeps the last silently;
    stricter parsers, such as skaffold's, refuse the whole manifest)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = {k for k in keys if keys.count(k) > 1}
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"{sorted(twice)} defined twice", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_no_manifest_has_a_key_twice(helm_bin: str, values: Path) -> None:
    result = render(helm_bin, f"--values={values}", FIXED_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert len([d for d in yaml.load_all(result.stdout, Loader=StrictLoader) if d]) > 20


def test_the_strict_loader_refuses_a_key_twice() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="defined twice"):
        yaml.load("labels: {a: 1, a: 2}", Loader=StrictLoader)  # noqa: S506 (a safe loader)


@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_every_object_and_pod_carries_the_recommended_labels(helm_bin: str, values: Path) -> None:
    docs = rendered(helm_bin, f"--values={values}", FIXED_PASSWORD)
    required = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    required |= {"app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"}
    for doc in docs:
        what = f"{doc['kind']} {doc['metadata']['name']}"
        labels = doc["metadata"].get("labels", {})
        assert required <= set(labels), what
        assert labels["app.kubernetes.io/instance"] == "ec2-terminal", what
        pod = pod_template(doc)
        if pod is not None:
            pod_labels = pod["metadata"]["labels"]
            assert {"app.kubernetes.io/name", "app.kubernetes.io/instance"} <= set(pod_labels)
            assert "app.kubernetes.io/component" in pod_labels, what


def test_one_image_runs_every_role(helm_bin: str) -> None:
    docs = rendered(
        helm_bin,
        "--set=image.repository=registry.example.com/team/ec2-terminal",
        "--set=image.tag=1.2.3",
        "--set=image.pullPolicy=Always",
        "--set=imagePullSecrets[0].name=pull",
    )
    wanted = "registry.example.com/team/ec2-terminal:1.2.3"
    roles = project_containers(docs)
    commands = {
        c["command"][1] if c["command"][0] != "ec2-terminal-operator" else "operator"
        for _, c in roles
    }
    # The operator, the worker, the CronJob's enqueue command and both test hooks.
    assert {"operator", "worker", "health-check", "/opt/ec2-terminal-test/helm_test.py"} <= commands
    for name, container in roles:
        assert (container["image"], container["imagePullPolicy"]) == (wanted, "Always"), name
    for doc in docs:
        pod = pod_template(doc)
        if pod is not None and doc["metadata"]["name"] != "ec2-terminal-redis":
            assert pod["spec"]["imagePullSecrets"] == [{"name": "pull"}], doc["metadata"]["name"]
    # And the session pods the operator creates.
    env = operator_env(docs)
    assert env["EC2_TERMINAL_OPERATOR_SESSION_IMAGE"] == wanted
    assert env["EC2_TERMINAL_OPERATOR_IMAGE_PULL_POLICY"] == "Always"


def test_the_default_image_is_the_one_hack_image_builds() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # hack/image tags localhost/ec2-terminal:<pyproject version>; an empty tag is appVersion.
    assert "NAME=localhost/ec2-terminal\n" in (ROOT / "hack/image").read_text()
    assert values["image"] == {
        "repository": "localhost/ec2-terminal",
        "tag": "",
        "pullPolicy": "IfNotPresent",
    }
    assert chart["appVersion"] == version
    assert OperatorConfig().session_image == f"localhost/ec2-terminal:{version}"
    dev = yaml.safe_load(DEV_VALUES.read_text())
    assert dev["image"] == {"repository": "localhost/ec2-terminal", "pullPolicy": "Never"}
    # *.localhost resolves to this machine in browsers, where kind maps ports 80 and 443.
    assert dev["ingress"]["sessionDomain"] == "localhost"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set=image.repository="], "at '/image/repository': minLength"),
        (["--set=imagePullSecrets[0].nam=x"], "at '/imagePullSecrets/0': missing property 'name'"),
        (["--set=operator.resources.request.cpu=1"], "additional properties 'request' not allowed"),
        (["--set=operator.tolerations[0].keys=a"], "additional properties 'keys' not allowed"),
        (["--set=observability.enable=true"], "additional properties 'enable' not allowed"),
        (["--set=observability.otlpEndpoint=grpc://x:4317"], "at '/observability/otlpEndpoint'"),
        (
            ["--set=observability.otlpEndpoint=http://u:p@x:4317"],
            "at '/observability/otlpEndpoint'",
        ),
        (["--set=observability.images[0].newTag=1"], "missing property 'name'"),
        (["--set=session.env.EC2_TERMINAL_HOST=evil"], "invalid propertyName 'EC2_TERMINAL_HOST'"),
        (["--set=session.env.HOME=/"], "invalid propertyName 'HOME'"),
        (["--set=session.podAnnotations.ec2-terminal\\.io/x=y"], "invalid propertyName"),
        (
            ["--set=networkPolicy.egress.extraTo[0].too=x"],
            "additional properties 'too' not allowed",
        ),
        (["--set=networkPolicy.metricsFrom[0].pods=x"], "additional properties 'pods' not allowed"),
        (
            ["--set=tests.session.hostKeyFingerprint=MD5:aa"],
            "at '/tests/session/hostKeyFingerprint'",
        ),
        (["--set=tests.session.timeoutSeconds=5"], "at '/tests/session/timeoutSeconds'"),
        (["--set=tests.sesion.enabled=false"], "additional properties 'sesion' not allowed"),
        (["--set=redis.persistence.size=lots"], "at '/redis/persistence/size'"),
    ],
)
def test_schema_refuses_bad_values_with_a_message(
    helm_bin: str, flags: list[str], message: str
) -> None:
    result = render(helm_bin, *flags)
    assert result.returncode != 0
    assert message in result.stderr


def _schema_objects(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, child in node.items():
            yield from _schema_objects(child, f"{path}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _schema_objects(child, f"{path}/{i}")


def test_every_schema_object_is_closed_and_every_property_described() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = list(_schema_objects(schema, ""))
    assert len(objects) > 30
    for path, node in objects:
        assert node.get("additionalProperties") is False, path
        if path:  # the definitions describe themselves through the properties using them
            assert node.get("description"), path
        for name, prop in node["properties"].items():
            assert prop.get("description"), f"{path}/{name}"


def _value_paths(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield (*path, key)
            yield from _value_paths(child, (*path, key))


def _schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: dict[str, Any] = schema
    for key in path:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        if key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def test_every_default_value_is_in_the_schema_and_every_top_level_key_has_a_default() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in _value_paths(values):
        assert _schema_at(schema, path) is not None, ".".join(path)
    assert set(values) == set(schema["properties"])


def test_observability_off_means_no_stack_and_no_otlp(helm_bin: str) -> None:
    docs = rendered(helm_bin)
    names = {d["metadata"]["name"] for d in docs}
    assert not names & {"otel-collector", "jaeger", "prometheus", "grafana", "grafana-admin"}
    for name, container in containers(docs):
        assert not [k for k in env_of(container) if k.startswith("OTEL_")], name
    env = operator_env(docs)
    assert json.loads(env["EC2_TERMINAL_OPERATOR_SESSION_ENV"]) == {}
    assert json.loads(env["EC2_TERMINAL_OPERATOR_SESSION_POD_ANNOTATIONS"]) == {}
    network = json.loads(env["EC2_TERMINAL_OPERATOR_NETWORK_POLICY"])
    assert network["egress"]["extraTo"] == []
    assert network["extraIngressFrom"] == []


def test_observability_on_wires_every_process_and_session_pod(helm_bin: str) -> None:
    docs = rendered(helm_bin, f"--values={CHART / 'ci/observability-values.yaml'}")
    endpoint = "http://otel-collector.ec2-terminal.svc:4317"
    services = {}
    for name, container in project_containers(docs):
        if container["command"][0] == "python3":
            continue  # the test hooks send no telemetry
        env = env_of(container)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint, name
        assert (env["OTEL_EXPORTER_OTLP_PROTOCOL"], env["OTEL_EXPORTER_OTLP_INSECURE"]) == (
            "grpc",
            "true",
        )
        services[name] = env["OTEL_SERVICE_NAME"]
    assert services == {
        "ec2-terminal": "ec2-terminal-operator",
        "ec2-terminal-health-worker": "ec2-terminal-worker",
        "ec2-terminal-health-check": "ec2-terminal-health-check",
    }

    # The operator, configured as the chart configures it, builds session pods that send OTLP
    # to the collector, may reach it, carry the scrape annotations and admit Prometheus.
    config = OperatorConfig.from_env(operator_env(docs))
    session = web_session()
    pod = resources.build_pod(session, config)
    pod_env = env_of(pod["spec"]["containers"][0])
    assert pod_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    assert pod_env["OTEL_SERVICE_NAME"] == "ec2-terminal-session"
    assert pod_env["TZ"] == "UTC"  # session.env of the ci file
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config.listen_port)
    policy = resources.build_network_policy(session, config)["spec"]
    collector = {"app.kubernetes.io/name": "otel-collector"}
    to_collector = [
        r
        for r in policy["egress"]
        if r["to"][0].get("podSelector", {}).get("matchLabels") == collector
    ]
    assert to_collector[0]["ports"] == [
        {"port": 4317, "protocol": "TCP"},
        {"port": 4318, "protocol": "TCP"},
    ]
    peers = policy["ingress"][0]["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ec2-terminal"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    } in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in peers

    # The worker admits the same scrapers on its metrics port, and nothing else.
    worker = by_name(docs)[("NetworkPolicy", "ec2-terminal-health-worker")]["spec"]
    assert worker["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert len(worker["ingress"][0]["from"]) == 2


# What the kubelet fills each downward API field with, for the test below.
POD_FIELDS = {
    "metadata.name": "web-7f9c",
    "metadata.namespace": "team",
    "metadata.uid": "0b5e-uid",
    "spec.nodeName": "node-a",
}


def test_every_process_names_its_pod_and_node_in_its_traces(helm_bin: str) -> None:
    docs = rendered(helm_bin, f"--values={CHART / 'ci/observability-values.yaml'}")
    pod = resources.build_pod(web_session(), OperatorConfig.from_env(operator_env(docs)))
    workloads = [(n, c) for n, c in project_containers(docs) if c["command"][0] != "python3"]
    for name, container in [*workloads, ("session pod", pod["spec"]["containers"][0])]:
        fields = {
            e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
            for e in container.get("env", [])
            if "fieldRef" in e.get("valueFrom", {})
        }
        env = {variable: POD_FIELDS[path] for variable, path in fields.items()}
        assert PodIdentity.from_env(env).attributes() == {
            "k8s.pod.name": "web-7f9c",
            "k8s.namespace.name": "team",
            "k8s.pod.uid": "0b5e-uid",
            "k8s.node.name": "node-a",
        }, name
    assert len(workloads) == 3


def test_an_external_collector_without_the_stack(helm_bin: str) -> None:
    docs = rendered(helm_bin, "--set=observability.otlpEndpoint=https://otel.example.com:4317")
    assert ("DaemonSet", "otel-collector") not in by_name(docs)
    env = operator_env(docs)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel.example.com:4317"
    assert env["OTEL_EXPORTER_OTLP_INSECURE"] == "false"
    network = json.loads(env["EC2_TERMINAL_OPERATOR_NETWORK_POLICY"])
    # No collector pods to name: egress to it is the administrator's (egress.extraTo or https).
    assert network["egress"]["extraTo"] == []
    # Without the bundled Prometheus and metricsFrom, nothing may connect to the worker.
    worker = by_name(docs)[("NetworkPolicy", "ec2-terminal-health-worker")]["spec"]
    assert worker["ingress"] == []


def test_network_policies_of_the_operator_and_worker(helm_bin: str) -> None:
    docs = by_name(rendered(helm_bin))
    operator = docs[("NetworkPolicy", "ec2-terminal")]["spec"]
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    (rule,) = operator["ingress"]
    assert rule["ports"] == [{"port": "liveness", "protocol": "TCP"}]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    service = docs[("Service", "ec2-terminal")]["spec"]
    assert service["ports"][0]["port"] == 8080
    off = by_name(rendered(helm_bin, "--set=networkPolicy.enabled=false"))
    assert not [k for k in off if k[0] == "NetworkPolicy" and k[1] != "ec2-terminal-redis"]


def _hooks(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        k: d
        for k, d in by_name(docs).items()
        if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    }


def test_helm_test_hooks_run_the_script_in_the_image(helm_bin: str) -> None:
    docs = rendered(helm_bin)
    hooks = _hooks(docs)
    assert sorted(hooks) == [
        ("ConfigMap", "ec2-terminal-test"),
        ("Job", "ec2-terminal-test-operator"),
        ("Job", "ec2-terminal-test-session"),
        ("Role", "ec2-terminal-test"),
        ("RoleBinding", "ec2-terminal-test"),
        ("Secret", "ec2-terminal-test-key"),
        ("ServiceAccount", "ec2-terminal-test"),
    ]
    # The mounted script is files/helm_test.py, byte for byte.
    script = hooks[("ConfigMap", "ec2-terminal-test")]["data"]["helm_test.py"]
    assert script == (CHART / "files/helm_test.py").read_text()
    liveness = hooks[("Job", "ec2-terminal-test-operator")]["spec"]["template"]["spec"]
    assert liveness["automountServiceAccountToken"] is False
    url = env_of(liveness["containers"][0])["EC2_TERMINAL_TEST_OPERATOR_URL"]
    assert url == "http://ec2-terminal.ec2-terminal.svc:8080/healthz"
    job = hooks[("Job", "ec2-terminal-test-session")]["spec"]
    env = env_of(job["template"]["spec"]["containers"][0])
    assert env["EC2_TERMINAL_TEST_NAMESPACE"] == "ec2-terminal"
    manifest = json.loads(env["EC2_TERMINAL_TEST_SESSION"])
    # A valid session the operator accepts, which deletes itself should the Job die.
    session = parse_session({**manifest, "metadata": {"name": "x", "namespace": "ec2-terminal"}})
    assert session.credentials is not None
    assert session.credentials.name == "ec2-terminal-test-key"
    assert manifest["spec"]["lifetime"]["onExpiry"] == "Delete"
    assert manifest["metadata"]["generateName"] == "ec2-terminal-test-"
    assert job["activeDeadlineSeconds"] > int(env["EC2_TERMINAL_TEST_TIMEOUT"])
    role = hooks[("Role", "ec2-terminal-test")]
    assert role["rules"] == [
        {
            "apiGroups": ["ec2-terminal.io"],
            "resources": ["terminalsessions"],
            "verbs": ["create", "get", "delete"],
        }
    ]
    for hook in hooks.values():
        annotations = hook["metadata"]["annotations"]
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_the_sample_session_goes_to_a_watched_namespace(helm_bin: str) -> None:
    namespaced = _hooks(rendered(helm_bin, f"--values={CHART / 'ci/namespaced-values.yaml'}"))
    env = env_of(
        namespaced[("Job", "ec2-terminal-test-session")]["spec"]["template"]["spec"]["containers"][
            0
        ]
    )
    assert env["EC2_TERMINAL_TEST_NAMESPACE"] == "sessions"
    assert namespaced[("Role", "ec2-terminal-test")]["metadata"]["namespace"] == "sessions"
    assert namespaced[("Secret", "ec2-terminal-test-key")]["metadata"]["namespace"] == "sessions"
    off = _hooks(rendered(helm_bin, "--set=tests.session.enabled=false"))
    assert sorted(k[1] for k in off) == [
        "ec2-terminal-test",
        "ec2-terminal-test",
        "ec2-terminal-test-operator",
    ]


def _notes(helm: str, *flags: str) -> str:
    result = run_helm(
        helm,
        "install",
        "ec2-terminal",
        str(CHART),
        "--dry-run=client",
        "--namespace=team",
        *flags,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:\n", 1)[1]


def test_notes_show_a_first_session_and_how_to_get_a_link(helm_bin: str) -> None:
    notes = _notes(helm_bin)
    assert "helm test ec2-terminal --namespace team" in notes
    assert (
        "kubectl -n team exec first -- ec2-terminal link --url http://127.0.0.1:8000/t/team/first/"
        in notes
    )
    assert "kubectl -n team port-forward svc/first 8000:80" in notes
    manifest = re.search(r"<<'EOF'\n(.*?)\nEOF\n", notes, re.S)
    assert manifest is not None
    session = yaml.safe_load(manifest.group(1))
    assert session["kind"] == "TerminalSession"
    assert "exposure" not in session["spec"]
    assert "grafana" not in notes

    routed = _notes(
        helm_bin, "--set=ingress.sessionDomain=term.example.com", "--set=observability.enabled=true"
    )
    assert "URL=$(kubectl -n team get ts first -o jsonpath='{.status.url}')" in routed
    assert 'exec first -- ec2-terminal link --url "$URL"' in routed
    manifest = re.search(r"<<'EOF'\n(.*?)\nEOF\n", routed, re.S)
    assert manifest is not None
    assert yaml.safe_load(manifest.group(1))["spec"]["exposure"] == {"type": "Ingress"}
    assert "kubectl -n team get secret grafana-admin" in routed
