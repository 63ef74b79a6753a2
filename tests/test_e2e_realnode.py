"""The whole product for real: the chart installed on the real node, a TerminalSession applied
with kubectl, the product's image run by the kubelet, and headless Chromium typing into the
terminal through Traefik. Nothing is faked: the operator, the health-check worker and the
CronJob's Job are pods of the image on the real node, the target is OpenSSH's sshd and the
broker Debian's redis-server, both on the node link's address (docs/realnode.md, "End to end").

One image import, one sshd, one Redis and one `helm install` serve the whole module; each test
applies its own session."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser import ARTIFACTS, TerminalPage, chromium
from tests.fixtures_healthcheck import RedisServer
from tests.fixtures_kube import KubeCluster, delete_namespace, wait_for
from tests.fixtures_operator import condition, get_session, key_secret, wait_events, wait_phase
from tests.fixtures_realnode import RealNode
from tests.fixtures_sshd import Sshd, start_sshd
from tests.support import free_port, stop
from tests.test_chart_install import RESTRICTED
from tests.test_image import ROOT, archive_json, hack
from tests.test_operator_chart import CHART
from tests.test_realnode import containers, pod_containers, running_tasks

# The first test also pays for the module's fixtures: the cluster, the node, the image saved
# and imported into containerd, and the chart (up to 270 s at load 14; more on a cold cache).
pytestmark = [
    pytest.mark.realnode,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
]

RELEASE = "e2e"
# Sessions get <name>-<namespace>.sessions.test (.test is reserved: it never resolves for real);
# Chromium maps every such name to Traefik's port.
SESSION_DOMAIN = "sessions.test"
KEY_SECRET = "ssh-key"
REDIS_SECRET = "redis-auth"
# The chart's CronJob runs every minute by default; here it never fires by itself, and the test
# makes its Job at once with `kubectl create job --from=cronjob/...`.
NEVER = "0 0 1 1 *"
TIMES_FILE = ARTIFACTS / "e2e-times.json"
REVISION_LABEL = "org.opencontainers.image.revision"
PROMPT = "test$"  # the tests' sshd sets PS1='test$ '


@dataclasses.dataclass(frozen=True)
class ProductImage:
    """The product's image, imported into the real node's containerd."""

    reference: str
    save_seconds: float
    import_seconds: float

    @property
    def repository(self) -> str:
        return self.reference.rpartition(":")[0]

    @property
    def tag(self) -> str:
        return self.reference.rpartition(":")[2]


@dataclasses.dataclass
class Times:
    """Measured durations, written to test-artifacts/e2e-times.json as they come."""

    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def record(self, what: str, seconds: float) -> None:
        self.seconds[what] = round(seconds, 2)
        ARTIFACTS.mkdir(exist_ok=True)
        report = {"seconds": self.seconds, "loadAverage1m": round(os.getloadavg()[0], 2)}
        TIMES_FILE.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


@dataclasses.dataclass
class Release:
    """The chart installed in its namespace, which is also where the sessions go."""

    cluster: KubeCluster
    node: RealNode
    sshd: Sshd
    namespace: str
    times: Times
    #: time.monotonic() when `helm install` started.
    installed_from: float
    #: Sessions applied so far (the first one is timed from the install).
    applied: list[str] = dataclasses.field(default_factory=list)

    def deployment(self, component: str) -> str:
        return f"{RELEASE}-ec2-terminal" + (f"-{component}" if component else "")

    def apply_session(self, name: str) -> float:
        """Applies a session onto the tests' sshd, placed on the real node; returns when."""
        placement = self.node.placement()
        manifest = {
            "apiVersion": "ec2-terminal.io/v1alpha1",
            "kind": "TerminalSession",
            "metadata": {"name": name},
            "spec": {
                "target": {"host": self.sshd.host, "port": self.sshd.port, "user": self.sshd.user},
                "credentialsSecretRef": {"name": KEY_SECRET},
                "hostKey": {"policy": "Fingerprint", "fingerprint": self.sshd.host_key_sha256},
                "exposure": {"type": "Ingress"},
                "pod": placement,
            },
        }
        self.applied.append(name)
        applied = time.monotonic()
        self.cluster.kubectl(
            "apply", "-f", "-", input=json.dumps(manifest), namespace=self.namespace
        )
        return applied

    def ready(self, name: str) -> dict[str, Any]:
        """Waits until the session is Ready (its pod Ready through the kubelet's probes)."""
        try:
            return wait_phase(self.cluster, self.namespace, name, "Ready", timeout=120)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{self.describe(name)}", pytrace=False)

    def pod(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.kubectl_json(
            "get", "pod", name, namespace=self.namespace
        )
        return result

    def event_messages(self, name: str, reason: str) -> list[str]:
        """The messages of the session's Events with this reason."""
        selector = f"involvedObject.kind=TerminalSession,involvedObject.name={name},reason={reason}"
        events = self.cluster.kubectl_json(
            "get", "events", f"--field-selector={selector}", namespace=self.namespace
        )
        return [e["message"] for e in events["items"]]

    def link(self, name: str) -> str:
        """A one-off link minted in the session pod by `ec2-terminal link` from its token file."""
        url = get_session(self.cluster, self.namespace, name)["status"]["url"]
        out = self.cluster.kubectl(
            "exec", name, "--", "ec2-terminal", "link", f"--url={url}", namespace=self.namespace
        )
        return out.strip()

    def describe(self, name: str) -> str:
        """What to read when a session does not come up: its status, Events, pod and logs."""
        parts = []
        for argv in (
            ("get", "ts", name, "-o", "yaml"),
            ("describe", "pod", name),
            ("logs", f"deploy/{self.deployment('')}", "--tail=40"),
        ):
            parts.append(self.cluster.kubectl(*argv, namespace=self.namespace, check=False))
        return "\n".join(parts)


@pytest.fixture(scope="module")
def times() -> Times:
    return Times()


def archive_labels(archive: Path) -> dict[str, str]:
    """The image config's labels in a one-image OCI archive (`podman save --format oci-archive`)."""

    def blob(tar: tarfile.TarFile, digest: str) -> Any:
        return archive_json(tar, "blobs/" + digest.replace(":", "/"))

    with tarfile.open(archive) as tar:
        (manifest,) = archive_json(tar, "index.json")["manifests"]
        config = blob(tar, blob(tar, manifest["digest"])["config"]["digest"])
    return dict(config.get("config", {}).get("Labels") or {})


def save_product_image(archive: Path) -> str:
    """hack/image --save ARCHIVE, built from this checkout; the image's reference.

    The machine's podman store is shared: another checkout's hack/image may retag
    localhost/ec2-terminal between this one's build and its save, so the archive's revision
    label is checked, and the save done once more if it is another commit's."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    revision = ""
    for _ in range(2):
        reference = hack("image", "--save", str(archive)).stdout.strip()
        revision = archive_labels(archive).get(REVISION_LABEL, "")
        if revision.split("-")[0] == head:
            return reference
    pytest.fail(
        f"{archive} holds revision {revision!r}, not this checkout's {head}: another "
        "checkout's hack/image retagged localhost/ec2-terminal meanwhile; run again",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def product_image(
    real_node: RealNode, times: Times, tmp_path_factory: pytest.TempPathFactory
) -> ProductImage:
    """hack/image's image, saved as an OCI archive and imported into the node (never pulled)."""
    archive = tmp_path_factory.mktemp("image") / "ec2-terminal.tar"
    started = time.monotonic()
    reference = save_product_image(archive)
    saved = time.monotonic()
    names = real_node.import_image(archive)
    imported = time.monotonic()
    archive.unlink()
    assert reference in names, f"the archive held {names}, not {reference}"
    times.record("image_build_check_and_save", saved - started)
    times.record("image_import", imported - saved)
    return ProductImage(reference, saved - started, imported - saved)


@pytest.fixture(scope="module")
def node_sshd(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """The tests' sshd, also on the node link's address, where session pods reach the machine."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"), f"ListenAddress {real_node.host_ip}")
    try:
        yield dataclasses.replace(server, host=real_node.host_ip)
    finally:
        stop(server.process)


@pytest.fixture(scope="module")
def node_redis(
    real_node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """Debian's redis-server, also on the node link's address, for the worker and the Job."""
    server = RedisServer(
        port=free_port(), directory=tmp_path_factory.mktemp("redis"), also_bind=(real_node.host_ip,)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def chart_values(
    node: RealNode, image: ProductImage, sshd: Sshd, redis: RedisServer
) -> dict[str, Any]:
    """The chart's values for the real node: its image, its placement, Traefik, the sshd's port."""
    placement = node.placement()
    return {
        "image": {"repository": image.repository, "tag": image.tag, "pullPolicy": "Never"},
        # Only the release's namespace: other tests' operators may watch theirs meanwhile.
        "watch": {"allNamespaces": False},
        "operator": {"logFormat": "plain", "resyncSeconds": 2, **placement},
        "ingress": {"sessionDomain": SESSION_DOMAIN, "className": node.ingress_class},
        "policy": {
            "allowedNodeSelectors": {key: [value] for key, value in node.label.items()},
            "allowedTolerations": placement["tolerations"],
        },
        # The tests' sshd listens on a free port, not 22.
        "networkPolicy": {"egress": {"ssh": {"ports": [sshd.port]}}},
        "healthCheck": {
            "schedule": NEVER,
            # No cluster DNS on this node: the worker goes to the Service's ClusterIP.
            "sessionEndpoint": "http://{cluster_ip}:{port}",
            "worker": {"concurrency": 1, **placement},
            "enqueue": placement,
        },
        "redis": {"externalUrl": redis.url_at(node.host_ip), "existingSecret": REDIS_SECRET},
        "tests": {"session": {"enabled": False}},
    }


@pytest.fixture(scope="module")
def release(
    kube_cluster: KubeCluster,
    kube_test_namespaces: list[str],
    terminalsession_crd: str,
    real_node: RealNode,
    product_image: ProductImage,
    node_sshd: Sshd,
    node_redis: RedisServer,
    times: Times,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """`helm install` of the chart, every pod of it on the real node; uninstalled afterwards."""
    namespace = f"e2e-{secrets.token_hex(4)}"
    kube_test_namespaces.append(namespace)
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {"ec2-terminal.io/test": "true", **RESTRICTED},
            },
        }
    )
    wait_for(
        lambda: kube_cluster.kubectl("get", "serviceaccount", "default", namespace=namespace),
        message=f"default ServiceAccount in {namespace}",
    )
    redis_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": REDIS_SECRET},
        "stringData": {"password": node_redis.password},
    }
    key = key_secret(KEY_SECRET, node_sshd.client_key_path.read_bytes())
    kube_cluster.apply([redis_secret, key], namespace=namespace)
    values = tmp_path_factory.mktemp("values") / "values.json"
    values.write_text(json.dumps(chart_values(real_node, product_image, node_sshd, node_redis)))
    rel = Release(kube_cluster, real_node, node_sshd, namespace, times, time.monotonic())
    try:
        kube_cluster.helm(
            "install", RELEASE, str(CHART), f"--values={values}", "--wait", "--timeout=5m",
            namespace=namespace, timeout=330,
        )  # fmt: skip
        times.record("helm_install_wait", time.monotonic() - rel.installed_from)
        yield rel
    finally:
        save_logs(kube_cluster, namespace)
        # While the operator runs, so that it releases the sessions' finalizers.
        kube_cluster.kubectl(
            "delete", "ts", "--all", "--wait=true", "--timeout=60s",
            namespace=namespace, check=False,
        )  # fmt: skip
        kube_cluster.helm(
            "uninstall", RELEASE, "--wait", "--timeout=2m", namespace=namespace, check=False
        )
        delete_namespace(kube_cluster, namespace)


def save_logs(cluster: KubeCluster, namespace: str) -> None:
    """The operator's and the worker's logs, into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    for component in ("", "-health-worker"):
        log = cluster.kubectl(
            "logs", f"deploy/{RELEASE}-ec2-terminal{component}", "--tail=2000",
            namespace=namespace, check=False,
        )  # fmt: skip
        (ARTIFACTS / f"e2e-{RELEASE}{component or '-operator'}.log").write_text(log)


@pytest.fixture
def browser(real_node: RealNode) -> Iterator[BrowserContext]:
    """Chromium resolving every session host to Traefik, as a wildcard DNS record would."""
    traefik = real_node.ingress_url.removeprefix("http://")
    rule = f"--host-resolver-rules=MAP *.{SESSION_DOMAIN} {traefik}"
    with chromium(args=[rule, "--no-proxy-server"]) as context:
        yield context


def through_ingress(node: RealNode, host: str, path: str = "/readyz") -> httpx.Response:
    return httpx.get(node.ingress_url + path, headers={"Host": host}, timeout=5, trust_env=False)


def open_shell(browser: BrowserContext, link: str) -> TerminalPage:
    """The terminal page on a link, once its shell shows a prompt."""
    terminal = TerminalPage.open(browser, link)
    terminal.wait_line(PROMPT, timeout=30)
    return terminal


def shell_pid(terminal: TerminalPage, mark: str) -> str:
    """The shell's PID, as the shell itself prints it (`echo MARK-$$`)."""
    terminal.run(f"echo {mark}-$$")
    pattern = re.compile(rf"{mark}-([0-9]+)")

    def printed() -> str:
        found = {m.group(1) for line in terminal.lines() if (m := pattern.fullmatch(line.strip()))}
        assert len(found) <= 1, found
        return found.pop() if found else ""

    return wait_for(printed, timeout=15, message=f"the shell's answer {mark}-<pid>")


def what_the_tab_shows(terminal: TerminalPage, timeout: float = 60) -> dict[str, Any]:
    """The tab's state, status line, login form and last lines once it has settled (closed,
    or asking for a login), or as they are after TIMEOUT seconds."""
    settled = """() => window.__ec2terminal.connection.uiState === 'closed'
        || !document.getElementById('login').hidden"""
    with contextlib.suppress(PlaywrightTimeoutError):
        terminal.page.wait_for_function(settled, timeout=timeout * 1000)
    seen: dict[str, Any] = terminal.eval(
        """() => ({
            state: window.__ec2terminal.connection.uiState,
            history: window.__ec2terminal.states,
            message: document.getElementById('message').textContent,
            login: !document.getElementById('login').hidden,
            newSession: !document.getElementById('new-session').hidden,
        })"""
    )
    return {**seen, "lines": [line for line in terminal.lines() if line][-5:]}


def test_apply_to_a_terminal_in_chromium_through_the_ingress(
    release: Release, product_image: ProductImage, browser: BrowserContext
) -> None:
    """kubectl apply; the kubelet runs the image; Chromium types through Traefik and reads 42."""
    first = not release.applied
    applied = release.apply_session("first")
    session = release.ready("first")
    ready = time.monotonic()
    host = f"first-{release.namespace}.{SESSION_DOMAIN}"
    assert session["status"]["url"] == f"http://{host}/"

    pod = release.pod("first")
    assert pod["spec"]["nodeName"] == release.node.name
    container = pod["spec"]["containers"][0]
    assert container["image"] == product_image.reference
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"]
    assert status["containerID"].removeprefix("containerd://") in running_tasks(release.node)
    # Ready through the kubelet's own probes: its requests are in the server's access log, from
    # the node's address on the pod network (the bridge's, .1), where nothing else sends from.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    node_side = pod["status"]["podIP"].rpartition(".")[0] + ".1"
    log = release.cluster.kubectl("logs", "first", namespace=release.namespace)
    assert re.search(rf'{re.escape(node_side)}:[0-9]+ - "GET /readyz HTTP/1\.1" 200', log), log

    link = release.link("first")
    assert link.startswith(f"http://{host}/#token=v1.")
    terminal = open_shell(browser, link)
    prompt = time.monotonic()
    terminal.run("echo $((6*7))")
    terminal.wait_line("42")
    assert terminal.statuses == [200]
    assert not terminal.errors
    terminal.screenshot("e2e-realnode-terminal.png")

    release.times.record("apply_to_ready", ready - applied)
    release.times.record("apply_to_first_prompt", prompt - applied)
    if first:
        release.times.record("helm_install_to_first_prompt", prompt - release.installed_from)


def test_reload_keeps_the_shell_and_a_deleted_pod_is_replaced_then_the_session_removed(
    release: Release, browser: BrowserContext
) -> None:
    """Reload: the same shell. Delete the pod: a new one, and Events say so. Delete the session:
    its container leaves containerd and its host is a 404 at the ingress."""
    release.apply_session("again")
    release.ready("again")
    host = f"again-{release.namespace}.{SESSION_DOMAIN}"
    terminal = open_shell(browser, release.link("again"))
    before = shell_pid(terminal, "pid")
    terminal.page.reload()
    terminal.wait_state("connected")
    assert "connected: resumed" in terminal.eval("window.__ec2terminal.states")
    assert shell_pid(terminal, "after") == before

    old = release.pod("again")
    release.cluster.kubectl("delete", "pod", "again", "--wait=false", namespace=release.namespace)

    def replaced() -> dict[str, Any]:
        pod = release.pod("again")
        fresh = pod["metadata"]["uid"] != old["metadata"]["uid"]
        return (
            pod
            if fresh
            and get_session(release.cluster, release.namespace, "again")["status"]["phase"]
            == "Ready"
            else {}
        )

    new = wait_for(replaced, timeout=120, message="a new pod for the session, Ready")
    assert new["spec"]["nodeName"] == release.node.name
    wait_events(release.cluster, release.namespace, "again", ("Normal", "PodReplacing"))
    ts = get_session(release.cluster, release.namespace, "again")
    assert condition(ts, "PodReady")["status"] == "True"
    created = release.event_messages("again", "PodCreated")
    assert len(created) == 2, created
    assert "pod again is being replaced" in release.event_messages("again", "PodReplacing")
    # What the user of the open tab sees once the new pod serves the host.
    seen = what_the_tab_shows(terminal)
    (ARTIFACTS / "e2e-pod-deleted-tab.json").write_text(json.dumps(seen, indent=2) + "\n")
    terminal.screenshot("e2e-realnode-pod-deleted.png")
    # The old server said why it closed (SIGTERM drains it): no endless "reconnecting".
    assert seen["state"] == "closed", seen
    assert seen["message"] == "Session ended: the terminal server is shutting down", seen
    assert seen["newSession"], seen
    assert not seen["login"], seen
    # A new server process: the old login is gone, a new link opens a new shell.
    other = open_shell(browser, release.link("again"))
    assert shell_pid(other, "new") != before

    assert through_ingress(release.node, host).status_code == 200
    ids = pod_containers(release.node, new["metadata"]["uid"])
    assert len(ids) == 2, "the sandbox and the server's container"
    release.cluster.kubectl(
        "delete", "ts", "again", "--wait=true", "--timeout=60s", namespace=release.namespace
    )
    server = new["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")

    def gone() -> bool:
        return server not in containers(release.node) and not ids & running_tasks(release.node)

    wait_for(gone, timeout=60, message="the session's container removed, its sandbox stopped")
    wait_for(
        lambda: through_ingress(release.node, host).status_code == 404,
        timeout=30,
        message=f"{host} answered 404 by the ingress",
    )


def test_the_cronjobs_job_on_the_real_node_checks_the_session(release: Release) -> None:
    """A Job from the chart's CronJob enqueues on Redis; the worker pod probes and writes status."""
    cluster, namespace = release.cluster, release.namespace
    release.apply_session("checked")
    release.ready("checked")
    job = f"check-{secrets.token_hex(3)}"
    cluster.kubectl(
        "create", "job", job, f"--from=cronjob/{release.deployment('health-check')}",
        namespace=namespace,
    )  # fmt: skip
    cluster.kubectl(
        "wait", f"job/{job}", "--for=condition=Complete", "--timeout=120s",
        namespace=namespace, timeout=130,
    )  # fmt: skip
    (pod,) = cluster.kubectl_json("get", "pods", f"--selector=job-name={job}", namespace=namespace)[
        "items"
    ]
    assert pod["spec"]["nodeName"] == release.node.name
    assert pod["status"]["phase"] == "Succeeded"
    out = cluster.kubectl("logs", f"job/{job}", namespace=namespace)
    # The other tests' sessions in the namespace are checked as well.
    assert re.match(r"enqueued [1-9][0-9]* health check\(s\)", out), out

    def checked() -> dict[str, Any]:
        return dict(
            (get_session(cluster, namespace, "checked").get("status") or {}).get("healthCheck")
            or {}
        )

    health = wait_for(checked, timeout=60, message="status.healthCheck of the session")
    assert health["result"] == "ok", health
    assert f"SSH on {release.sshd.host}:{release.sshd.port} answered" in health["message"]
    assert "OpenSSH" in health["message"]

    def reachable() -> dict[str, Any]:
        c = condition(get_session(cluster, namespace, "checked"), "TargetReachable")
        return c if c.get("status") == "True" else {}

    wait_for(reachable, timeout=30, message="TargetReachable=True")
    wait_events(cluster, namespace, "checked", ("Normal", "TargetReachable"))
