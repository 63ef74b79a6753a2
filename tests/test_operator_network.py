"""network.py, the session NetworkPolicy builder and the egress half of admission (pure)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from ec2_terminal_operator import admission, resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.network import Destinations, IPBlock, NetworkSettings
from ec2_terminal_operator.policy import PolicyError
from ec2_terminal_operator.spec import parse_session

from tests.test_operator_units import body

CONFIG = OperatorConfig()


def target(**fields: Any) -> Any:
    return parse_session(body(target={"host": "10.0.0.5", "port": 22, **fields}))


def test_only_the_ingress_controller_and_the_health_checker_reach_the_pod() -> None:
    policy = resources.build_network_policy(target(), CONFIG)
    assert policy["metadata"]["name"] == "demo"
    assert policy["metadata"]["labels"][resources.LABEL_SESSION] == "demo"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {resources.LABEL_SESSION: "demo"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                },
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ec2-terminal"}
                    },
                    "podSelector": {
                        "matchLabels": {"app.kubernetes.io/component": "health-worker"}
                    },
                },
            ],
            "ports": [{"protocol": "TCP", "port": 8000}],
        }
    ]


def test_egress_reaches_the_target_port_https_and_dns_but_no_link_local_address() -> None:
    egress = resources.build_network_policy(target(port=2222), CONFIG)["spec"]["egress"]
    anywhere = [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
        {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10", "fd00:ec2::/32"]}},
    ]
    assert egress[0] == {"to": anywhere, "ports": [{"protocol": "TCP", "port": 2222}]}
    assert egress[1] == {
        "to": anywhere,
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
    }
    assert egress[2]["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert egress[2]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    off = dataclasses.replace(CONFIG, network=NetworkSettings(egress_enabled=False))
    spec = resources.build_network_policy(target(), off)["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ({}, True),
        ({"port": 2222}, False),
        ({"host": "169.254.169.254"}, False),
        ({"host": "fd00:ec2::254"}, False),
        ({"host": "fe80::1"}, False),
        ({"host": "2600:1f18::5"}, True),
        ({"host": "bastion.internal.example.com"}, True),
    ],
)
def test_targets_the_egress_policy_would_block_are_refused_at_once(
    fields: dict[str, Any], allowed: bool
) -> None:
    result = admission.check_target(target(**fields), CONFIG.network)
    assert result.ok is allowed
    if not allowed:
        assert result.reason == "TargetNotAllowed"
    # Without the egress policy, the operator has nothing to check against.
    off = NetworkSettings(egress_enabled=False)
    assert admission.check_target(target(**fields), off).ok


CHART_VALUES = {
    "enabled": True,
    "ingressNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}},
    "healthCheckPodSelector": {"matchLabels": {"app": "worker"}},
    "healthCheckNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
    "extraIngressFrom": [{"namespaceSelector": {"matchLabels": {"team": "bastion"}}}],
    "egress": {
        "enabled": True,
        "ssh": {
            "cidrs": [{"cidr": "10.20.0.0/16", "except": ["10.20.9.0/24"]}],
            "ports": [22, 2222],
        },
        "https": {"cidrs": [{"cidr": "0.0.0.0/0"}], "ports": [443]},
        "dnsNamespaceSelector": {},
        "dnsPodSelector": {"matchLabels": {"k8s-app": "coredns"}},
    },
}


def test_settings_come_from_the_charts_values() -> None:
    settings = NetworkSettings.parse(json.dumps(CHART_VALUES))
    assert settings.ingress_namespace_selector == CHART_VALUES["ingressNamespaceSelector"]
    assert settings.extra_ingress_from == (
        {"namespaceSelector": {"matchLabels": {"team": "bastion"}}},
    )
    assert settings.ssh == Destinations((IPBlock("10.20.0.0/16", ("10.20.9.0/24",)),), (22, 2222))
    assert settings.https == Destinations((IPBlock("0.0.0.0/0"),), (443,))
    assert settings.dns_pod_selector == {"matchLabels": {"k8s-app": "coredns"}}
    config = dataclasses.replace(CONFIG, network=settings)
    ingress_from = resources.build_network_policy(target(), config)["spec"]["ingress"][0]["from"]
    assert ingress_from[-1] == {"namespaceSelector": {"matchLabels": {"team": "bastion"}}}
    assert not admission.check_target(target(host="10.20.9.7"), settings).ok
    assert admission.check_target(target(host="10.20.8.7", port=2222), settings).ok
    assert NetworkSettings.parse("") == NetworkSettings()
    env = {"EC2_TERMINAL_OPERATOR_NETWORK_POLICY": json.dumps(CHART_VALUES)}
    assert OperatorConfig.from_env(env).network == settings


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"enable": True}, "networkPolicy: unknown settings enable"),
        ({"egress": {"ssh": {"ports": [0]}}}, "ports must be a list of ports"),
        ({"egress": {"ssh": {"cidrs": [{"cidr": "10.0.0.0/33"}]}}}, "bad CIDR"),
        (
            {"egress": {"ssh": {"cidrs": [{"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}]}}},
            "not inside",
        ),
        ({"egress": {"https": {"cidrs": ["0.0.0.0/0"]}}}, "each entry is"),
        ({"ingressNamespaceSelector": {"team": "x"}}, "must be a label selector"),
        ({"extraIngressFrom": [{"namespace": "x"}]}, "NetworkPolicy peers"),
        ({"enabled": "yes"}, "must be true or false"),
        ([], "networkPolicy must be an object"),
    ],
)
def test_malformed_settings_are_refused(values: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        NetworkSettings.parse(json.dumps(values))
    with pytest.raises(ValueError, match="EC2_TERMINAL_OPERATOR_NETWORK_POLICY"):
        OperatorConfig.from_env({"EC2_TERMINAL_OPERATOR_NETWORK_POLICY": json.dumps(values)})
