"""The chart on the real test control plane (tests/fixtures_kube.py), in namespaces that
enforce the restricted Pod Security Standard: every rendered object passes the API server's
server-side dry run (its OpenAPI schemas, admission, no warning); `helm install` creates every
object and every pod is admitted; `helm test` runs its hooks, and their commands also run here
as local processes against a real operator (kwok runs no container); an upgrade keeps the
generated passwords; `helm uninstall` leaves only the CRD."""

from __future__ import annotations

import base64
import functools
import json
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kube import ROOT, KubeCluster, delete_namespace, wait_for
from tests.fixtures_operator import OperatorFactory, can_i
from tests.support import env_without_proxies, free_port
from tests.test_chart_render import VALUES, values_id
from tests.test_operator_chart import CHART, _sa_kubeconfig, documents, install_watching

RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}
SERVER_DRY_RUN = (
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager=chart-test",
    "--validate=strict",
    "--dry-run=server",
    "-f",
    "-",
)
HOOK_ANNOTATIONS = ("helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy")


def server_dry_run(
    cluster: KubeCluster, manifests: str, namespace: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` as a server-side dry run: every field validated strictly against the
    server's OpenAPI schemas (and the CRDs' schemas and CEL rules), admission run, nothing kept."""
    argv = [str(cluster.kubectl_path), *SERVER_DRY_RUN]
    if namespace:
        argv.append(f"--namespace={namespace}")
    return subprocess.run(
        argv,
        input=manifests,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(cluster.env),
        check=False,
    )


def restrict(cluster: KubeCluster, namespace: str) -> None:
    """Makes the namespace enforce (and warn about) the restricted Pod Security Standard."""
    labels = [f"{k}={v}" for k, v in RESTRICTED.items()]
    cluster.kubectl("label", "namespace", namespace, "--overwrite", *labels)


@pytest.fixture
def restricted(kube_cluster: KubeCluster, namespace: str) -> str:
    """The test's namespace, enforcing the restricted Pod Security Standard."""
    restrict(kube_cluster, namespace)
    return namespace


@pytest.fixture
def sessions_namespace(kube_cluster: KubeCluster, kube_test_namespaces: list[str]) -> Iterator[str]:
    """A second restricted namespace, for the namespaced values' watched namespace."""
    name = f"t-{secrets.token_hex(4)}"
    kube_test_namespaces.append(name)
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"ec2-terminal.io/test": "true", **RESTRICTED}},
        }
    )
    try:
        yield name
    finally:
        delete_namespace(kube_cluster, name)


def flags_for(values: Path, sessions: str) -> list[str]:
    """The values file, with the namespaced values watching the test's second namespace."""
    flags = [f"--values={values}"]
    if values.stem == "namespaced-values":
        flags.append(f"--set=watch.namespaces={{{sessions}}}")
    return flags


@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_every_rendered_object_passes_the_api_servers_dry_run(
    kube_cluster: KubeCluster,
    terminalsession_crd: str,
    restricted: str,
    sessions_namespace: str,
    values: Path,
) -> None:
    rendered = kube_cluster.helm(
        "template",
        f"r{restricted[2:]}",
        str(CHART),
        f"--namespace={restricted}",
        "--include-crds",
        *flags_for(values, sessions_namespace),
    )
    docs = documents(rendered)
    assert len(docs) > 20
    # The test hooks are in `helm template`'s output too, so they are checked as well.
    assert {"CustomResourceDefinition", "Job", "CronJob"} <= {d["kind"] for d in docs}
    result = server_dry_run(kube_cluster, rendered)
    assert result.returncode == 0, result.stderr
    # Pod templates are checked against the restricted standard (warn), pods refused (enforce).
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_the_dry_run_refuses_a_pod_template_that_is_not_restricted(
    kube_cluster: KubeCluster, restricted: str
) -> None:
    # The check above can fail: a template without the security context draws the warning.
    rendered = kube_cluster.helm(
        "template",
        "r",
        str(CHART),
        f"--namespace={restricted}",
        "--show-only=templates/deployment.yaml",
    )
    deploy = next(d for d in documents(rendered) if d["kind"] == "Deployment")
    del deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    result = server_dry_run(kube_cluster, json.dumps(deploy))
    assert 'would violate PodSecurity "restricted' in result.stderr


def listable_kinds(cluster: KubeCluster) -> str:
    """Every kind that can be listed, but events and the deprecated ones that warn."""
    names = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").split()
    skip = {"events", "events.events.k8s.io", "componentstatuses", "endpoints"}
    return ",".join(n for n in names if n not in skip)


def labelled(cluster: KubeCluster, kinds: str, release: str) -> list[str]:
    """Every object, in any namespace, of the release (its instance label)."""
    out = cluster.kubectl(
        "get", kinds, "-A", "-o", "name", f"-l=app.kubernetes.io/instance={release}"
    )
    return out.split()


def present(cluster: KubeCluster, namespace: str | None, kind: str, name: str) -> bool:
    """Whether the object exists."""
    out = cluster.kubectl(
        "get", kind, name, "--ignore-not-found", "-o", "name", namespace=namespace
    )
    return bool(out.strip())


def secret_value(cluster: KubeCluster, namespace: str, name: str) -> bytes:
    secret = cluster.kubectl_json("get", "secret", name, namespace=namespace)
    return base64.b64decode(secret["data"]["password"])


@pytest.mark.slow
@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_install_test_upgrade_and_uninstall(
    kube_cluster: KubeCluster,
    terminalsession_crd: str,
    restricted: str,
    sessions_namespace: str,
    values: Path,
) -> None:
    namespace, release = restricted, f"i{restricted[2:]}"
    fullname = f"{release}-ec2-terminal"
    flags = flags_for(values, sessions_namespace)
    # The ci files fix the generated passwords for their renderings; an install generates them.
    flags += ["--set=redis.auth.password=", "--set=observability.grafana.adminPassword="]
    kinds = listable_kinds(kube_cluster)
    kube_cluster.helm(
        "install", release, str(CHART), f"--namespace={namespace}", *flags, "--timeout=120s"
    )
    try:
        # Every object the release renders exists.
        manifest = documents(
            kube_cluster.helm("get", "manifest", release, f"--namespace={namespace}")
        )
        for doc in manifest:
            ns = doc["metadata"].get("namespace")
            kube_cluster.kubectl("get", doc["kind"], doc["metadata"]["name"], namespace=ns)
        workloads = [d for d in manifest if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
        assert workloads

        # Every workload's pods are admitted by the restricted namespace (kwok then runs them).
        def admitted() -> bool:
            for doc in workloads:
                ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
                status = kube_cluster.kubectl_json("get", doc["kind"], name, namespace=ns)["status"]
                if doc["kind"] == "DaemonSet":
                    if (
                        not status.get("desiredNumberScheduled")
                        or status.get("numberReady") != status["desiredNumberScheduled"]
                    ):
                        return False
                elif doc["kind"] == "StatefulSet":
                    # Its pod waits for a volume where persistence is on (no provisioner here).
                    kube_cluster.kubectl("get", "pod", f"{name}-0", namespace=ns)
                elif status.get("availableReplicas") != doc["spec"].get("replicas", 1):
                    return False
            return True

        wait_for(
            admitted, timeout=90, interval=1, message="every workload's pods admitted and ready"
        )
        cronjobs = [d["metadata"]["name"] for d in manifest if d["kind"] == "CronJob"]
        for cron in cronjobs:
            job = f"{cron[:40]}-now"
            kube_cluster.kubectl(
                "create", "job", job, f"--from=cronjob/{cron}", namespace=namespace
            )
            job_pods = functools.partial(
                kube_cluster.kubectl, "get", "pods", f"-l=job-name={job}", "-o", "name"
            )
            wait_for(
                functools.partial(job_pods, namespace=namespace),
                timeout=60,
                message=f"the pod of a Job made from CronJob {cron}",
            )

        # helm test: the hooks run (kwok finishes their Jobs), pass, and are deleted after.
        report = kube_cluster.helm("test", release, f"--namespace={namespace}", "--timeout=120s")
        for check in ("operator", "session"):
            assert f"TEST SUITE:     {fullname}-test-{check}\n" in report
        assert "Phase:          Failed" not in report
        hooks = documents(kube_cluster.helm("get", "hooks", release, f"--namespace={namespace}"))
        assert {d["kind"] for d in hooks} >= {
            "Job",
            "ConfigMap",
            "Secret",
            "Role",
            "ServiceAccount",
        }
        for hook in hooks:
            ns = hook["metadata"].get("namespace")
            name = hook["metadata"]["name"]
            assert not present(kube_cluster, ns, hook["kind"], name), name

        # An upgrade keeps the generated passwords (lookup): Redis's, Grafana's.
        passwords = {
            d["metadata"]["name"]: secret_value(kube_cluster, namespace, d["metadata"]["name"])
            for d in manifest
            if d["kind"] == "Secret"
        }
        assert passwords  # every values file here bundles Redis or Grafana
        kube_cluster.helm(
            "upgrade", release, str(CHART), f"--namespace={namespace}", *flags, "--timeout=120s"
        )
        for name, password in passwords.items():
            assert secret_value(kube_cluster, namespace, name) == password, name
            assert len(password) >= 32
    finally:
        kube_cluster.helm(
            "uninstall",
            release,
            f"--namespace={namespace}",
            "--wait",
            "--timeout=120s",
            check=False,
        )

    # Nothing of the release remains in any namespace (pods, the Redis claim, Jobs the
    # CronJob made included): only the CRD, which Helm never deletes.
    wait_for(
        lambda: not labelled(kube_cluster, kinds, release),
        timeout=90,
        interval=1,
        message=f"everything of {release} deleted",
    )
    assert present(kube_cluster, None, "crd", terminalsession_crd)


def apply_hook_objects(cluster: KubeCluster, hooks: list[dict[str, Any]]) -> None:
    """Creates the test hooks' ServiceAccount, Role, Secret... as `helm test` does, not the Jobs."""
    for hook in hooks:
        if hook["kind"] == "Job":
            continue
        for key in HOOK_ANNOTATIONS:
            hook["metadata"]["annotations"].pop(key)
        cluster.apply(hook, namespace=hook["metadata"]["namespace"])


def run_hook(
    job: dict[str, Any], script: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Runs the hook's command as the pod would, with the mounted script at its local path."""
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["python3", "/opt/ec2-terminal-test/helm_test.py"]
    return subprocess.run(
        [sys.executable, str(script), *command[2:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def job_env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.slow
def test_the_hooks_commands_pass_against_a_real_operator_and_fail_with_a_reason(
    kube_cluster: KubeCluster,
    restricted: str,
    operator_factory: OperatorFactory,
    tmp_path: Path,
) -> None:
    namespace, release = restricted, f"h{restricted[2:]}"
    fullname = f"{release}-ec2-terminal"
    install_watching(kube_cluster, release, namespace, "--wait")
    try:
        hooks = documents(kube_cluster.helm("get", "hooks", release, f"--namespace={namespace}"))
        jobs = {d["metadata"]["name"]: d for d in hooks if d["kind"] == "Job"}
        script = tmp_path / "helm_test.py"
        config_map = next(d for d in hooks if d["kind"] == "ConfigMap")
        script.write_text(config_map["data"]["helm_test.py"])
        apply_hook_objects(kube_cluster, hooks)

        # The chart's operator, played by a local process with the Deployment's settings and
        # its ServiceAccount's rights.
        deploy = kube_cluster.kubectl_json("get", "deployment", fullname, namespace=namespace)
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        operator = operator_factory(
            namespace,
            kubeconfig=_sa_kubeconfig(
                kube_cluster, namespace, fullname, tmp_path / "operator.kubeconfig"
            ),
            env={e["name"]: e.get("value", "") for e in container["env"]},
        )

        liveness = jobs[f"{fullname}-test-operator"]
        env = {**env_without_proxies(), **job_env(liveness)}
        # The deviation: the Service's name resolves only inside the cluster.
        assert (
            env["EC2_TERMINAL_TEST_OPERATOR_URL"]
            == f"http://{fullname}.{namespace}.svc:8080/healthz"
        )
        done = run_hook(
            liveness, script, {**env, "EC2_TERMINAL_TEST_OPERATOR_URL": operator.liveness_url}
        )
        assert done.returncode == 0, done.stderr
        assert f"the operator answers {operator.liveness_url}" in done.stdout
        dead = f"http://127.0.0.1:{free_port()}/healthz"
        done = run_hook(
            liveness,
            script,
            {**env, "EC2_TERMINAL_TEST_OPERATOR_URL": dead, "EC2_TERMINAL_TEST_TIMEOUT": "3"},
        )
        assert done.returncode == 1
        assert f"the operator's liveness endpoint {dead} does not answer" in done.stderr

        # The sample session, with the test account's rights only.
        session_job = jobs[f"{fullname}-test-session"]
        account = f"{fullname}-test"
        assert can_i(kube_cluster, namespace, account, "create", "terminalsessions")
        assert not can_i(kube_cluster, namespace, account, "list", "terminalsessions")
        assert not can_i(kube_cluster, namespace, account, "get", "secrets")
        env = {
            **env_without_proxies(),
            **job_env(session_job),
            "KUBECONFIG": str(
                _sa_kubeconfig(kube_cluster, namespace, account, tmp_path / "test.kubeconfig")
            ),
        }
        done = run_hook(session_job, script, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert " is Ready at http://" in done.stdout
        assert "deleted TerminalSession" in done.stdout
        wait_for(
            lambda: not kube_cluster.kubectl("get", "ts", "-o", "name", namespace=namespace),
            timeout=60,
            message="the sample session deleted",
        )

        # A session the operator refuses (its SSH port is not allowed) fails the test at once,
        # with the operator's reason, and is deleted too.
        manifest = json.loads(env["EC2_TERMINAL_TEST_SESSION"])
        manifest["spec"]["target"]["port"] = 2222
        done = run_hook(
            session_job, script, {**env, "EC2_TERMINAL_TEST_SESSION": json.dumps(manifest)}
        )
        assert done.returncode == 1
        assert "not ready after" in done.stderr
        assert "Accepted:" in done.stderr
        assert "2222" in done.stderr
        wait_for(
            lambda: not kube_cluster.kubectl("get", "ts", "-o", "name", namespace=namespace),
            timeout=60,
            message="the refused session deleted",
        )
        assert operator.alive()
    finally:
        kube_cluster.helm("uninstall", release, f"--namespace={namespace}", "--wait", check=False)


def documented_commands(section: str) -> list[list[str]]:
    """The commands of the first code block under a heading of docs/install.md, as argv."""
    text = (ROOT / "docs/install.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    block = body.split("```\n", 2)[1]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_documented_upgrade_applies_the_crd_then_the_chart(
    kube_cluster: KubeCluster, terminalsession_crd: str, restricted: str
) -> None:
    namespace, release = restricted, f"u{restricted[2:]}"
    kube_cluster.helm(
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--set=redis.persistence.enabled=false",
    )
    try:
        crd, upgrade = documented_commands("Upgrade")
        assert crd[:2] == ["kubectl", "apply"]
        assert upgrade[:3] == ["helm", "upgrade", "ec2-terminal"]
        # As after a real install, Helm owns the CRD's fields: the documented apply takes them.
        kube_cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=helm",
            "--force-conflicts",
            "-f",
            str(CHART / "crds"),
        )
        kube_cluster.kubectl(*crd[1:-1], str(CHART / "crds"))
        established = kube_cluster.kubectl_json("get", "crd", terminalsession_crd)["status"][
            "conditions"
        ]
        assert {"type": "Established", "status": "True"}.items() <= next(
            c for c in established if c["type"] == "Established"
        ).items()
        # The chart path, release and namespace are the example's; the flags are the document's.
        assert upgrade[3:] == [
            "charts/ec2-terminal",
            "--namespace",
            "ec2-terminal",
            "--reuse-values",
        ]
        kube_cluster.helm(
            "upgrade", release, str(CHART), f"--namespace={namespace}", "--reuse-values"
        )
        status = json.loads(
            kube_cluster.helm("status", release, f"--namespace={namespace}", "-o", "json")
        )
        assert (status["version"], status["info"]["status"]) == (2, "deployed")
    finally:
        kube_cluster.helm("uninstall", release, f"--namespace={namespace}", "--wait", check=False)
    # The apply left the CRD managed by kubectl, which Helm never deletes either.
    assert present(kube_cluster, None, "crd", terminalsession_crd)
