"""examples/: one session per access method and host key policy, each accepted by the operator's
parser and by the API server (the CRD's schema and CEL rules, server-side dry run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from ec2_terminal_operator.spec import AccessMethod, HostKeyPolicy, parse_session

from tests.fixtures_kube import ROOT, KubeCluster
from tests.test_chart_install import server_dry_run

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def sessions() -> list[Any]:
    return [
        parse_session({**d, "metadata": {**d["metadata"], "namespace": "team"}})
        for path in EXAMPLES
        for d in documents(path)
        if d["kind"] == "TerminalSession"
    ]


def test_every_access_method_and_host_key_policy_has_an_example() -> None:
    parsed = sessions()
    assert {s.target.access_method for s in parsed} == set(AccessMethod)
    assert {s.host_key.policy for s in parsed} == set(HostKeyPolicy)


def test_the_known_hosts_example_parses() -> None:
    secret = next(
        d for d in documents(ROOT / "examples/session-known-hosts.yaml") if d["kind"] == "Secret"
    )
    known = asyncssh.import_known_hosts(secret["stringData"]["known_hosts"])
    trusted, _, _, _, _, _, _ = known.match("build.internal.example.com", "", None)
    assert len(trusted) == 1


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_api_server_accepts_the_example(
    kube_cluster: KubeCluster, terminalsession_crd: str, namespace: str, example: Path
) -> None:
    done = server_dry_run(kube_cluster, example.read_text(), namespace)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(documents(example))
