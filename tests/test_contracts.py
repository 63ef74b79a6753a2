"""docs/architecture.md against the code: the server, the page and the operator cannot drift.

The tables of docs/architecture.md are read as data and compared with the server's constants
(app/terminal/protocol.py, app/terminal/closecodes.py, every TerminalError class, the command
parser) and with the page's, which web/contract.mjs prints by bundling web/src/protocol.ts. The
activity the session server reports is compared with what the operator reads back.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pkgutil
import re
import shutil
import subprocess
import tomllib
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from ec2_terminal_operator import lifetime, observed, resources, status
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import Session, parse_session

import app
from app.cli.main import build_parser
from app.cli.options import ENV_PREFIX, env_name
from app.errors import TerminalError
from app.healthcheck.results import CheckResult, HealthRecord, Outcome
from app.kube import activity
from app.terminal.closecodes import CloseCode
from app.terminal.protocol import CLIENT_FRAMES, SUBPROTOCOL, ConnectionState, FrameType
from tests.doctables import code_spans, leading_integer, table_with, tables_with

ROOT = Path(__file__).resolve().parent.parent
# The activity reporter's Lease and holder: `serve` flags the operator sets on the session pod.
ACTIVITY_LEASE = env_name("activity_lease")
POD_UID = env_name("pod_uid")
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CRD = ROOT / "charts" / "ec2-terminal" / "crds" / "terminalsessions.ec2-terminal.io.yaml"
PAGE_PROTOCOL = "web/src/protocol.ts"
LIMIT_COLUMNS = ("limit", "value", "name in the code")


@pytest.fixture(scope="module")
def doc() -> str:
    """The text of docs/architecture.md."""
    return ARCHITECTURE.read_text()


@pytest.fixture(scope="module")
def page() -> dict[str, Any]:
    """The page's constants, as web/contract.mjs prints them."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run hack/setup (the page's constants need it)")
    if not (ROOT / "web" / "node_modules" / "esbuild").is_dir():
        pytest.fail("web/node_modules has no esbuild: run hack/setup (npm ci in web/)")
    done = subprocess.run(
        [node, str(ROOT / "web" / "contract.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"web/contract.mjs failed:\n{done.stderr}"
    constants: dict[str, Any] = json.loads(done.stdout)
    return constants


def _members(enum: type[IntEnum]) -> dict[str, int]:
    return {member.name: int(member) for member in enum}


def test_the_subprotocol_is_named_alike(doc: str, page: dict[str, Any]) -> None:
    heading = re.search(r"^## WebSocket protocol `([^`]+)`$", doc, re.MULTILINE)
    assert heading is not None, "docs/architecture.md has no '## WebSocket protocol `...`'"
    assert heading.group(1) == SUBPROTOCOL == page["SUBPROTOCOL"]


def test_frame_types_match(doc: str, page: dict[str, Any]) -> None:
    table = table_with(doc, ("byte", "type", "sent by", "payload"))
    documented = {
        code_spans(row["type"])[0]: int(code_spans(row["byte"])[0], 16) for row in table.rows
    }
    assert documented == _members(FrameType), "docs vs app/terminal/protocol.py FrameType"
    assert documented == page["FrameType"], f"docs vs {PAGE_PROTOCOL} FrameType"
    sent_by = {code_spans(row["type"])[0]: row["sent by"] for row in table.rows}
    assert set(sent_by.values()) <= {"client", "server", "both"}, sent_by
    from_clients = {name for name, who in sent_by.items() if who in ("client", "both")}
    assert from_clients == {t.name for t in CLIENT_FRAMES}, (
        "docs vs app/terminal/protocol.py CLIENT_FRAMES"
    )


def test_close_codes_match(doc: str, page: dict[str, Any]) -> None:
    table = table_with(doc, ("code", "name", "sent when", "the page"))
    documented = {code_spans(row["name"])[0]: leading_integer(row["code"]) for row in table.rows}
    assert documented == _members(CloseCode), "docs vs app/terminal/closecodes.py"
    assert documented == page["CloseCode"], f"docs vs {PAGE_PROTOCOL} CloseCode"
    behaviour = {leading_integer(row["code"]): row["the page"] for row in table.rows}
    assert set(behaviour.values()) <= {"ends", "reconnects"}, behaviour
    final = {code for code, what in behaviour.items() if what == "ends"}
    assert final == set(page["FATAL_CLOSE_CODES"]), "docs vs web/src/connection.ts"


def _terminal_errors(root: type[TerminalError]) -> list[type[TerminalError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _terminal_errors(sub)
    return found


def _server_error_codes() -> dict[str, int]:
    """Every ERROR code a TerminalError class of any module under app/ carries, with its close."""
    for module in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(module.name)
    codes: dict[str, int] = {}
    for cls in _terminal_errors(TerminalError):
        assert codes.get(cls.code, cls.close_code) == cls.close_code, (
            f"{cls.__name__}: {cls.code} has two close codes"
        )
        codes[cls.code] = int(cls.close_code)
    return codes


def test_error_codes_match(doc: str, page: dict[str, Any]) -> None:
    table = table_with(doc, ("code", "close", "when"))
    documented: dict[str, int] = {}
    for row in table.rows:
        for code in code_spans(row["code"]):
            assert code not in documented, f"{code} is documented twice"
            documented[code] = leading_integer(row["close"])
    assert documented == _server_error_codes(), "docs vs the TerminalError classes under app/"
    for name, code in page["ErrorCode"].items():
        assert code in documented, f"{PAGE_PROTOCOL} acts on {code}, which the server never sends"
        assert name == code.upper(), f"{PAGE_PROTOCOL} ErrorCode.{name} is {code}"


def _module(path: str) -> ModuleType:
    return importlib.import_module(path.removesuffix(".py").replace("/", "."))


def test_limits_match(doc: str, page: dict[str, Any]) -> None:
    limits = [row for t in tables_with(doc, LIMIT_COLUMNS) for row in t.rows]
    assert len(limits) >= 8, "docs/architecture.md lost its limits tables"
    for row in limits:
        value = leading_integer(row["value"])
        names = code_spans(row["name in the code"])
        files = re.findall(r"\b(?:app|web/src)/[\w/]+\.(?:py|ts)\b", row["name in the code"])
        assert len(names) == 1, f"limit {row['limit']!r}: name one constant"
        assert files, f"limit {row['limit']!r}: name the files that hold {names[0]}"
        for file in files:
            if file == PAGE_PROTOCOL:
                actual = page.get(names[0])
            elif file.endswith(".py"):
                actual = getattr(_module(file), names[0], None)
            else:
                raise AssertionError(f"limit {row['limit']!r}: cannot read constants of {file}")
            assert actual == value, f"{names[0]} in {file} is {actual}, docs say {value}"


def test_status_states_match(doc: str, page: dict[str, Any]) -> None:
    table = table_with(doc, ("state", "sent"))
    documented = [code_spans(cell)[0] for cell in table.column("state")]
    assert documented == page["STATUS_STATES"], "docs vs web/src/protocol.ts"
    assert documented == [s.value for s in ConnectionState], "docs vs app/terminal/protocol.py"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    """The subcommands of `ec2-terminal`, by name."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def test_the_commands_are_documented(doc: str) -> None:
    table = table_with(doc, ("command", "what", "flags and settings"))
    documented = {code_spans(cell)[0] for cell in table.column("command")}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {f"ec2-terminal {name}" for name in _subcommands()}
    commands |= {script for script in scripts if script != "ec2-terminal"}
    assert documented == commands, "docs/architecture.md vs the console scripts and subcommands"


def _spelled(module: ModuleType, prefix: str) -> dict[str, str]:
    """The string constants of `module` whose names start with `prefix`."""
    return {
        name: value
        for name, value in vars(module).items()
        if name.startswith(prefix) and isinstance(value, str)
    }


def test_activity_annotations_are_spelled_alike(doc: str) -> None:
    server = _spelled(activity, "ANNOTATION_")
    operator = _spelled(resources, "ANNOTATION_")
    assert server, "app/kube/activity.py spells no ANNOTATION_* keys"
    for name, key in server.items():
        assert operator.get(name) == key, (
            f"{name}: the server writes {key}, the operator reads {operator.get(name)}"
        )
    written = set(activity.annotations_for(2, 1_700_000_000.0))
    assert written <= set(operator.values()), "the server writes keys the operator does not know"
    assert written == set(server.values())
    section = doc[doc.index("### Activity") :]
    for key in server.values():
        assert f"`{key}`" in section, f"docs/architecture.md's Activity section lacks {key}"


def _session() -> Session:
    return parse_session(
        {
            "metadata": {"name": "demo", "namespace": "team-a", "uid": "u", "generation": 1},
            "spec": {
                "target": {"host": "10.0.0.5"},
                "credentialsSecretRef": {"name": "ssh-key"},
                "hostKey": {"policy": "KnownHostsSecret", "knownHostsSecretRef": {"name": "kh"}},
                "exposure": {"type": "Ingress", "host": "term.example.com"},
            },
        }
    )


def _pod_environment(session: Session) -> dict[str, dict[str, Any]]:
    """The session container's environment as the operator renders it, by name."""
    pod = resources.build_pod(session, OperatorConfig())
    (container,) = pod["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.anyio
async def test_the_lease_report_the_server_sends_is_what_the_operator_reads() -> None:
    session = _session()
    env = _pod_environment(session)
    lease = resources.build_lease(session)
    assert env[ACTIVITY_LEASE]["value"] == lease["metadata"]["name"]
    assert env[POD_UID]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    sent: list[httpx.Request] = []

    def api_server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    endpoint = activity.LeaseEndpoint(
        "https://api.test", session.namespace, lease["metadata"]["name"], "pod-uid", token="t"
    )
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    async with httpx.AsyncClient(transport=httpx.MockTransport(api_server)) as client:
        await activity.lease_writer(endpoint, client)(activity.annotations_for(3, when))
    (request,) = sent
    assert request.url.path == (
        f"/apis/coordination.k8s.io/v1/namespaces/team-a/leases/{lease['metadata']['name']}"
    )
    # The session's Role must grant the verb, on that Lease only.
    (rule,) = resources.build_role(session)["rules"]
    assert rule["resources"] == ["leases"]
    assert rule["resourceNames"] == [lease["metadata"]["name"]]
    assert request.method.lower() in rule["verbs"]
    # The API server applies the JSON merge patch to the Lease the operator made.
    assert request.headers["content-type"] == "application/merge-patch+json"
    patch = json.loads(request.content)
    lease["metadata"]["annotations"] = patch["metadata"]["annotations"]
    lease["spec"] = {**lease["spec"], **patch["spec"]}
    report = observed.activity_view(lease)
    pod = observed.pod_view({"metadata": {"name": "demo", "uid": "pod-uid"}, "status": {}})
    assert report.of(pod) == observed.Activity("pod-uid", 3, when)
    assert report.of(observed.pod_view({"metadata": {"name": "demo", "uid": "old"}})) is None


def _target_reachable(session: Session, health_check: dict[str, Any]) -> str:
    """The TargetReachable status the operator derives from a status.healthCheck."""
    seen = observed.Observed(
        deleting=False,
        credentials=observed.Check(True, "SecretFound", "found"),
        pod=None,
        route=observed.Check(True, "ServiceReady", "ready"),
        health_check=health_check,
    )
    now = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    life = lifetime.evaluate(session, {}, None, now)
    verdict = status.compute(session, seen, life, {}, OperatorConfig(), now)
    (condition,) = (c for c in verdict.status["conditions"] if c["type"] == "TargetReachable")
    return str(condition["status"])


def test_health_check_records_are_what_the_crd_and_the_operator_expect(doc: str) -> None:
    session = _session()
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    section = doc[doc.index("### Health checks") :]
    for result in CheckResult:
        record = HealthRecord(when, Outcome(result, "what was found", 1.5), "task-1").to_status()
        assert set(record) == set(schema["healthCheck"]["properties"]), "worker vs the CRD"
        assert all(f"`{key}`" in section for key in record), "docs lack a status.healthCheck key"
        assert f"`{result.value}`" in section, f"docs/architecture.md lacks result {result.value}"
        expected = "True" if result is CheckResult.OK else "False"
        assert _target_reachable(session, record) == expected, f"the operator on {result.value}"


def _serve_environment() -> set[str]:
    """The EC2_TERMINAL_* variables `ec2-terminal serve` reads: its flags', the token's."""
    serve = _subcommands()["serve"]
    flags = {ENV_PREFIX + a.dest.upper() for a in serve._actions if a.option_strings}
    return flags - {ENV_PREFIX + "HELP"} | {ENV_PREFIX + "TOKEN"}


def test_the_operator_sets_only_what_the_server_reads() -> None:
    env = _pod_environment(_session())
    unread = {name for name in env if name.startswith(ENV_PREFIX)} - _serve_environment()
    assert not unread, f"the operator sets variables the server never reads: {unread}"
    assert ACTIVITY_LEASE in env, "the activity reporter has no Lease to write"
    for name in ("EC2_TERMINAL_POD_NAME", "EC2_TERMINAL_POD_NAMESPACE", POD_UID):
        assert "fieldRef" in env[name].get("valueFrom", {}), f"{name} is not the pod's own"


_LINK = re.compile(r"\]\(([^)\s]+)\)")
_NOT_DOCS = {"node_modules", "build", "dist", "test-artifacts"}


def _anchors(markdown: str) -> set[str]:
    """The anchors of a document's headings, as GitHub makes them (code blocks skipped)."""
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#+ (.+)", line)):
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_document_links_stay_in_the_repository_and_resolve() -> None:
    documents = [
        path
        for path in ROOT.rglob("*.md")
        if not any(p.startswith(".") or p in _NOT_DOCS for p in path.relative_to(ROOT).parts)
    ]
    assert ROOT / "README.md" in documents
    broken = []
    for path in documents:
        for target in _LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)}: {target}"
            if not resolved.is_relative_to(ROOT):
                broken.append(f"{where} (outside the repository)")
            elif not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif (
                anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved.read_text())
            ):
                broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
