"""The chart's health-check objects: rendered (typos: tests/test_operator_chart.py), and the
CronJob on the real control plane making a Job whose command, run locally with its
environment, enqueues checks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_healthcheck import RedisServer, run_command
from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import OperatorFactory, ready_session
from tests.support import console_script, env_without_proxies, free_port
from tests.test_operator_chart import (
    CHART,
    _sa_kubeconfig,
    documents,
    helm_bin,
    install_watching,
    render,
)

__all__ = ["helm_bin"]  # the fixture, re-used from the operator's chart tests

FULLNAME = "ec2-terminal"


def objects(helm: str, *flags: str) -> dict[tuple[str, str], dict[str, Any]]:
    result = render(helm, *flags)
    assert result.returncode == 0, result.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in documents(result.stdout)}


def test_defaults_render_worker_cronjob_and_redis(helm_bin: str) -> None:
    docs = objects(helm_bin, f"--values={CHART / 'ci/default-values.yaml'}")
    cron = docs[("CronJob", "ec2-terminal-health-check")]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] == 30
    assert (cron["successfulJobsHistoryLimit"], cron["failedJobsHistoryLimit"]) == (1, 3)
    job_pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["command"] == ["ec2-terminal", "health-check"]
    assert job_pod["serviceAccountName"] == "ec2-terminal-health-enqueue"

    worker = docs[("Deployment", "ec2-terminal-health-worker")]["spec"]["template"]["spec"]
    container = worker["containers"][0]
    assert container["command"][:2] == ["ec2-terminal", "worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EC2_TERMINAL_REDIS_URL"] == "redis://ec2-terminal-redis.ec2-terminal.svc:6379/0"
    assert env["EC2_TERMINAL_REDIS_PASSWORD_FILE"].endswith("/password")
    assert worker["terminationGracePeriodSeconds"] > float(env["EC2_TERMINAL_HEALTH_TIME_LIMIT"])
    for pod in (worker, job_pod):
        assert pod["securityContext"]["runAsNonRoot"] is True
        security = pod["containers"][0]["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}

    redis = docs[("StatefulSet", "ec2-terminal-redis")]["spec"]
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    redis_container = redis["template"]["spec"]["containers"][0]
    assert "--appendonly yes" in redis_container["args"][0]
    # The password reaches redis-server from the environment, never from its command line.
    assert "rendered-in-ci-only" not in str(redis_container)
    secret = docs[("Secret", "ec2-terminal-redis")]
    assert base64.b64decode(secret["data"]["password"]) == b"rendered-in-ci-only"
    policy = docs[("NetworkPolicy", "ec2-terminal-redis")]["spec"]
    allowed = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in policy["ingress"][0]["from"]
    ]
    assert allowed == ["health-worker", "health-enqueue"]


def test_generated_redis_password_is_random_and_long(helm_bin: str) -> None:
    first = objects(helm_bin, "--set=redis.auth.password=")[("Secret", "ec2-terminal-redis")]
    second = objects(helm_bin, "--set=redis.auth.password=")[("Secret", "ec2-terminal-redis")]
    assert first["data"]["password"] != second["data"]["password"]
    assert len(base64.b64decode(first["data"]["password"])) == 40


def test_health_check_rbac_is_least_privilege(helm_bin: str) -> None:
    docs = objects(helm_bin)
    worker = docs[("ClusterRole", "ec2-terminal-health-worker")]["rules"]
    assert worker == [
        {"apiGroups": ["ec2-terminal.io"], "resources": ["terminalsessions"], "verbs": ["get"]},
        {
            "apiGroups": ["ec2-terminal.io"],
            "resources": ["terminalsessions/status"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
    ]
    enqueue = docs[("ClusterRole", "ec2-terminal-health-enqueue")]["rules"]
    assert enqueue == [
        {"apiGroups": ["ec2-terminal.io"], "resources": ["terminalsessions"], "verbs": ["list"]}
    ]
    namespaced = objects(helm_bin, f"--values={CHART / 'ci/namespaced-values.yaml'}")
    assert ("Role", "ec2-terminal-health-worker") in namespaced
    assert ("ClusterRole", "ec2-terminal-health-worker") not in namespaced
    command = namespaced[("CronJob", "ec2-terminal-health-check")]["spec"]["jobTemplate"]
    assert command["spec"]["template"]["spec"]["containers"][0]["command"][-1] == (
        "--namespace=sessions"
    )


def test_external_redis_and_disabled_checks(helm_bin: str) -> None:
    external = objects(
        helm_bin,
        "--set=redis.externalUrl=rediss://cache.example.com:6380/1",
        "--set=redis.existingSecret=cache-auth",
    )
    assert not [k for k in external if k[1] == "ec2-terminal-redis"]
    worker = external[("Deployment", "ec2-terminal-health-worker")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in worker["containers"][0]["env"]}
    assert env["EC2_TERMINAL_REDIS_URL"] == "rediss://cache.example.com:6380/1"
    assert worker["volumes"][1]["secret"]["secretName"] == "cache-auth"
    disabled = objects(helm_bin, "--set=healthCheck.enabled=false")
    # The operator's objects and the `helm test` hooks (tests/test_chart_install.py) only.
    assert sorted({k[0] for k in disabled}) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Job",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    assert not [k for k in disabled if "health" in k[1] or "redis" in k[1]]


@pytest.mark.slow
def test_cronjob_makes_a_job_whose_command_enqueues_checks(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_factory: OperatorFactory,
    tmp_path: Path,
) -> None:
    release = f"h{namespace}"
    install_watching(kube_cluster, release, namespace)
    try:
        fullname = f"{release}-ec2-terminal"
        operator_factory(namespace)
        ready_session(kube_cluster, namespace, "cron")

        as_worker = f"--as=system:serviceaccount:{namespace}:{fullname}-health-worker"
        as_enqueue = f"--as=system:serviceaccount:{namespace}:{fullname}-health-enqueue"
        status = "--subresource=status"
        for who, verb, what, allowed in (
            (as_worker, "patch", ["terminalsessions", status], "yes"),
            (as_worker, "patch", ["terminalsessions"], "no"),
            (as_worker, "list", ["secrets"], "no"),
            (as_enqueue, "list", ["terminalsessions"], "yes"),
            (as_enqueue, "patch", ["terminalsessions", status], "no"),
        ):
            can = kube_cluster.kubectl(
                "auth", "can-i", verb, *what, who, namespace=namespace, check=False
            )
            assert can.strip() == allowed, (who, verb, what)

        # The control plane's CronJob controller makes the Job on the next minute boundary.
        def scheduled() -> dict[str, Any]:
            jobs = kube_cluster.kubectl_json("get", "jobs", namespace=namespace)["items"]
            owned = [
                j
                for j in jobs
                if any(
                    o["name"] == f"{fullname}-health-check"
                    for o in j["metadata"].get("ownerReferences", [])
                )
            ]
            return owned[0] if owned else {}

        job = wait_for(scheduled, timeout=90, interval=1, message="a Job from the CronJob")
        container = job["spec"]["template"]["spec"]["containers"][0]

        # Redis with the password the chart generated, as the Secret holds it.
        secret = kube_cluster.kubectl_json(
            "get", "secret", f"{fullname}-redis", namespace=namespace
        )
        password = base64.b64decode(secret["data"]["password"]).decode()
        redis = RedisServer(port=free_port(), directory=tmp_path / "redis", password=password)
        redis.directory.mkdir()
        redis.start()
        try:
            mounted = tmp_path / "redis-password"
            mounted.mkdir()
            (mounted / "password").write_text(password)
            env = env_without_proxies()
            for entry in container["env"]:
                env[entry["name"]] = entry["value"]
            # The deviations from the pod: the Service name resolves only in the cluster, the
            # Secret is a local file, and the account's token comes by kubeconfig.
            env["EC2_TERMINAL_REDIS_URL"] = redis.url
            env["EC2_TERMINAL_REDIS_PASSWORD_FILE"] = str(mounted / "password")
            env["KUBECONFIG"] = str(
                _sa_kubeconfig(
                    kube_cluster,
                    namespace,
                    f"{fullname}-health-enqueue",
                    tmp_path / "enqueue.kubeconfig",
                )
            )
            command = container["command"]
            done = run_command([console_script(command[0]), *command[1:]], env)
            assert done.returncode == 0, done.stderr
            assert "enqueued 1 health check(s)" in done.stdout
            assert redis.client().llen("ec2-terminal-health") == 1
            assert password not in done.stdout + done.stderr
        finally:
            redis.stop()
    finally:
        kube_cluster.helm("uninstall", release, f"--namespace={namespace}", "--wait", check=False)
