"""The administrator's additions to every session pod (the chart's session.env,
session.podAnnotations and networkPolicy.egress.extraTo): parsed strictly, applied without
ever overriding the operator's own configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from ec2_terminal_operator import resources
from ec2_terminal_operator.config import SESSION_FEATURE_ENV, OperatorConfig
from ec2_terminal_operator.network import NetworkSettings
from ec2_terminal_operator.spec import parse_session

from app.cli.main import build_parser

FINGERPRINT = "SHA256:" + "A" * 43
OTLP = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.obs.svc:4317",
    "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.uid=$(EC2_TERMINAL_POD_UID)",
}
SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}
COLLECTOR_RULE = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}},
        }
    ],
    "ports": [{"port": 4317, "protocol": "TCP"}],
}


def session() -> Any:
    return parse_session(
        {
            "apiVersion": "ec2-terminal.io/v1alpha1",
            "kind": "TerminalSession",
            "metadata": {"name": "demo", "namespace": "team-a", "uid": "u-1", "generation": 1},
            "spec": {
                "target": {"host": "10.0.0.5", "user": "ec2-user"},
                "credentialsSecretRef": {"name": "key", "key": "ssh-privatekey"},
                "hostKey": {"policy": "Fingerprint", "fingerprint": FINGERPRINT},
            },
        }
    )


def subcommand_help(name: str) -> str:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return str(commands.choices[name].format_help())


def config(**env: str) -> OperatorConfig:
    return OperatorConfig.from_env({f"EC2_TERMINAL_OPERATOR_{k}": v for k, v in env.items()})


def test_extra_env_and_annotations_reach_the_session_pod() -> None:
    cfg = config(SESSION_ENV=json.dumps(OTLP), SESSION_POD_ANNOTATIONS=json.dumps(SCRAPE))
    pod = resources.build_pod(session(), cfg)
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert {k: env[k] for k in OTLP} == OTLP
    assert env["EC2_TERMINAL_HOST"] == "10.0.0.5"
    # Last, so that $(EC2_TERMINAL_POD_UID) from the downward API expands in them.
    assert names[-len(OTLP) :] == list(OTLP)
    assert names.index("EC2_TERMINAL_POD_UID") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    annotations = pod["metadata"]["annotations"]
    assert {k: annotations[k] for k in SCRAPE} == SCRAPE
    assert resources.ANNOTATION_POD_HASH in annotations


def test_the_terminals_features_reach_the_pod_and_nothing_else_of_the_servers_does() -> None:
    features = {
        "EC2_TERMINAL_CLIPBOARD_OSC52": "on",
        "EC2_TERMINAL_MAX_VIEWERS": "0",
        "EC2_TERMINAL_MAX_UPLOAD_BYTES": "1024",
        "EC2_TERMINAL_MAX_DOWNLOAD_BYTES": "0",
        "EC2_TERMINAL_MAX_RECORDING_BYTES": "4096",
    }
    assert set(features) == SESSION_FEATURE_ENV
    pod = resources.build_pod(session(), config(SESSION_ENV=json.dumps(features)))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert {k: env[k] for k in features} == features
    # Each names a flag of `ec2-terminal serve`, which reads it from the variable.
    help_text = " ".join(subcommand_help("serve").split())
    for name in features:
        assert f"[env {name}]" in help_text, name


def test_without_extras_the_pod_hash_is_what_it_was() -> None:
    # Pods made before these settings existed are not replaced by an upgrade on their account.
    pod = resources.build_pod(session(), OperatorConfig())
    assert pod["metadata"]["annotations"][resources.ANNOTATION_POD_HASH] == resources._digest(
        pod["spec"]
    )


def test_changing_the_annotations_changes_only_the_pod_hash() -> None:
    plain = resources.build_pod(session(), OperatorConfig())["metadata"]["annotations"]
    scraped = resources.build_pod(session(), config(SESSION_POD_ANNOTATIONS=json.dumps(SCRAPE)))
    annotations = scraped["metadata"]["annotations"]
    assert annotations[resources.ANNOTATION_CONFIG_HASH] == plain[resources.ANNOTATION_CONFIG_HASH]
    assert annotations[resources.ANNOTATION_POD_HASH] != plain[resources.ANNOTATION_POD_HASH]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SESSION_ENV", '{"EC2_TERMINAL_HOST": "evil"}', "EC2_TERMINAL_HOST is the operator's"),
        ("SESSION_ENV", '{"HOME": "/"}', "HOME is the operator's"),
        ("SESSION_ENV", '{"EC2_TERMINAL_TOKEN_FILE": "/x"}', "EC2_TERMINAL_TOKEN_FILE is the"),
        ("SESSION_ENV", '{"1BAD": "x"}', "not an environment variable name"),
        ("SESSION_ENV", '{"A": 1}', "JSON object of strings"),
        ("SESSION_ENV", "[1]", "JSON object of strings"),
        ("SESSION_ENV", "{", "not valid JSON"),
        (
            "SESSION_POD_ANNOTATIONS",
            '{"ec2-terminal.io/pod-hash": "x"}',
            "annotation ec2-terminal.io/pod-hash is the operator's",
        ),
    ],
)
def test_malformed_extras_stop_the_operator_with_the_variable_named(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"EC2_TERMINAL_OPERATOR_{name}") as err:
        config(**{name: value})
    assert message in str(err.value)


def test_extra_egress_rules_are_appended_to_the_session_policy() -> None:
    values = {"egress": {"extraTo": [COLLECTOR_RULE]}}
    cfg = config(NETWORK_POLICY=json.dumps(values))
    policy = resources.build_network_policy(session(), cfg)
    assert policy["spec"]["egress"][-1] == COLLECTOR_RULE
    # SSH, HTTPS and DNS stay first and unchanged.
    assert len(policy["spec"]["egress"]) == 4
    off = config(
        NETWORK_POLICY=json.dumps({"egress": {"enabled": False, "extraTo": [COLLECTOR_RULE]}})
    )
    assert "egress" not in resources.build_network_policy(session(), off)["spec"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"to": []}, "must be a list of egress rules"),
        ([{"to": [{"nodeSelector": {}}]}], "extraTo[0].to must be a list of NetworkPolicy peers"),
        ([{"to": [], "ports": [{"protocol": "TCP"}]}], "extraTo[0].ports must be a list"),
        ([{"to": [], "from": []}], "extraTo[0]: unknown settings from"),
    ],
)
def test_malformed_egress_rules_are_refused(rules: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"networkPolicy\.egress") as err:
        NetworkSettings.parse(json.dumps({"egress": {"extraTo": rules}}))
    assert message in str(err.value)
