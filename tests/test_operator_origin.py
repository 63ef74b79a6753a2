"""origin.py, the Ingress part of admission.py and ingress_annotations.py (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from ec2_terminal_operator import admission, ingress_annotations, origin, resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.origin import Claim
from ec2_terminal_operator.policy import IngressPolicy
from ec2_terminal_operator.spec import Session, parse_session

from tests.fixtures_operator import CRD_PATH
from tests.test_operator_units import body, env_of

DOMAIN = "term.example.com"
POLICY = IngressPolicy(
    session_domain=DOMAIN, allowed_hosts=("*.apps.example.com",), allowed_class_names=("nginx",)
)
CONFIG = OperatorConfig(session_image="ec2-terminal:test", ingress=POLICY)
T1, T2 = "2026-01-01T12:00:00Z", "2026-01-01T12:00:05Z"


def ingress_session(name: str = "demo", namespace: str = "team-a", **exposure: Any) -> Session:
    raw = body(exposure={"type": "Ingress", **exposure})
    raw["metadata"].update(name=name, namespace=namespace)
    return parse_session(raw)


def route_check(
    session: Session, policy: IngressPolicy = POLICY, claims: tuple[Claim, ...] = ()
) -> tuple[bool, str, str]:
    route = origin.plan(session, policy)
    result = admission.check_route(session, route, policy, claims, T2)
    return result.ok, result.reason, result.message


def test_each_session_gets_its_own_host_under_the_domain_served_at_the_root() -> None:
    s = ingress_session()
    route = origin.plan(s, POLICY)
    assert route == origin.Route("demo-team-a.term.example.com", "/", False, assigned=True)
    tls = origin.plan(s, dataclasses.replace(POLICY, session_tls=True))
    assert tls is not None
    assert tls.https
    assert resources.session_url(s, CONFIG) == "http://demo-team-a.term.example.com/"
    ingress = resources.build_ingress(s, CONFIG)
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "demo-team-a.term.example.com"
    assert rule["http"]["paths"][0]["path"] == "/"
    env = env_of(resources.build_pod(s, CONFIG))
    assert env["EC2_TERMINAL_BASE_PATH"] == "/"
    assert env["EC2_TERMINAL_ALLOWED_ORIGINS"] == "http://demo-team-a.term.example.com"
    assert env["EC2_TERMINAL_ALLOWED_HOSTS"] == ",".join(
        [
            "demo-team-a.term.example.com",
            "demo",
            "demo.team-a",
            "demo.team-a.svc",
            "demo.team-a.svc.cluster.local",
        ]
    )


def test_domain_hosts_use_the_controllers_default_certificate_or_the_sessions_own() -> None:
    config = dataclasses.replace(CONFIG, ingress=dataclasses.replace(POLICY, session_tls=True))
    s = ingress_session()
    assert resources.build_ingress(s, config)["spec"]["tls"] == [
        {"hosts": ["demo-team-a.term.example.com"]}
    ]
    assert resources.session_url(s, config) == "https://demo-team-a.term.example.com/"
    own = ingress_session(tls={"secretName": "mine"})
    assert resources.build_ingress(own, CONFIG)["spec"]["tls"] == [
        {"hosts": ["demo-team-a.term.example.com"], "secretName": "mine"}
    ]


def test_a_long_name_stays_one_dns_label() -> None:
    name, namespace = "s" * 50, "n" * 40
    label = origin.host_label(name, namespace)
    assert len(label) == 63
    assert label != origin.host_label(name, "n" * 39 + "m")
    assert label[:20] == "s" * 20
    assert origin.host_label("web", "default") == "web-default"


def test_an_explicit_host_serves_one_session_the_older_keeps_it() -> None:
    s = ingress_session(host="x.apps.example.com")
    route = origin.plan(s, POLICY)
    assert route == origin.Route("x.apps.example.com", "/t/team-a/demo/", False, assigned=False)
    older = Claim(T1, "team-b", "other", "/t/team-b/other/")
    ok, reason, message = route_check(s, claims=(older,))
    assert (ok, reason) == (False, "HostInUse")
    assert "team-b/other" in message
    # The other way round the older one, us, keeps it; our own claim never conflicts.
    newer = Claim("2026-01-01T12:00:09Z", "team-b", "other", "/t/team-b/other/")
    assert route_check(s, claims=(newer, Claim(T2, "team-a", "demo", "/")))[0]
    # Same second: namespace, then name, decides.
    tie = Claim(T2, "team-0", "other", "/")
    assert route_check(s, claims=(tie,))[1] == "HostInUse"


def test_hosts_and_classes_only_as_the_policy_allows() -> None:
    assert route_check(ingress_session(host="x.apps.example.com"))[0]
    ok, reason, message = route_check(ingress_session(host="evil.example.org"))
    assert (ok, reason) == (False, "HostNotAllowed")
    assert "*.apps.example.com" in message
    # One label below a wildcard, not two.
    assert not route_check(ingress_session(host="a.b.apps.example.com"))[0]
    # Another session's domain host cannot be taken by naming it.
    ok, reason, message = route_check(ingress_session(host="victim-team-a.term.example.com"))
    assert (ok, reason) == (False, "HostNotAllowed")
    assert "assigned by the operator" in message
    assert route_check(ingress_session(host="demo-team-a.term.example.com"))[0]
    ok, reason, _ = route_check(ingress_session(ingressClassName="internal-admin"))
    assert (ok, reason) == (False, "IngressClassNotAllowed")
    assert route_check(ingress_session(ingressClassName="nginx"))[0]


def test_a_shared_origin_needs_the_administrators_consent() -> None:
    policy = IngressPolicy()
    ok, reason, message = route_check(ingress_session(), policy)
    assert (ok, reason) == (False, "SharedOriginRefused")
    assert "ingress.sessionDomain" in message
    shared = IngressPolicy(allow_shared_origin=True)
    assert route_check(ingress_session(), shared)[0]
    # On the shared origin, no session's path may nest in another's.
    outer = Claim(T1, "team-a", "a", "/t/team-a/a/")
    nested = ingress_session("b", pathPrefix="/t/team-a/a")
    ok, reason, message = route_check(nested, shared, (outer,))
    assert (ok, reason) == (False, "PathNested")
    assert "/t/team-a/a/team-a/b/" in message
    inner = Claim(T1, "team-a", "x", "/t/team-a/a/team-a/x/")
    assert route_check(ingress_session("a"), shared, (inner,))[1] == "PathNested"
    sibling = Claim(T1, "team-a", "ab", "/t/team-a/ab/")
    assert route_check(ingress_session("a"), shared, (sibling,))[0]


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        ({"nginx.ingress.kubernetes.io/auth-url": "http://evil/"}, "may not set"),
        ({"nginx.ingress.kubernetes.io/server-alias": "bank.example.com"}, "may not set"),
        ({"nginx.ingress.kubernetes.io/mirror-target": "http://evil/"}, "may not set"),
        ({"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;"}, "may not set"),
        ({"nginx.ingress.kubernetes.io/proxy-read-timeout": "1"}, "the operator sets it"),
        ({"nginx.ingress.kubernetes.io/proxy-body-size": "1m; evil"}, "a size"),
        ({"nginx.ingress.kubernetes.io/whitelist-source-range": "0.0.0.0/0 x"}, "CIDRs"),
        ({"cert-manager.io/cluster-issuer": "Le Prod"}, "object name"),
    ],
)
def test_annotations_are_an_allow_list_with_checked_values(
    annotations: dict[str, str], fragment: str
) -> None:
    ok, reason, message = route_check(ingress_session(annotations=annotations))
    assert (ok, reason) == (False, "AnnotationNotAllowed")
    assert fragment in message


def test_allowed_annotations_pass_and_never_override_the_operators() -> None:
    allowed = {
        "nginx.ingress.kubernetes.io/proxy-connect-timeout": "30",
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8, 192.168.1.0/24",
        "nginx.ingress.kubernetes.io/force-ssl-redirect": "true",
        "cert-manager.io/cluster-issuer": "letsencrypt-prod",
    }
    assert route_check(ingress_session(annotations=allowed))[0]
    # Even a session that got past the checks cannot override the operator's own.
    forced = ingress_session(annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "1"})
    ann = resources.build_ingress(forced, CONFIG)["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"


def test_the_crd_carries_the_same_annotation_rules() -> None:
    crd = yaml.safe_load(Path(CRD_PATH).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    annotations = schema["properties"]["spec"]["properties"]["exposure"]["properties"][
        "annotations"
    ]
    assert annotations["x-kubernetes-validations"] == ingress_annotations.cel_rules()


def test_the_index_claims_every_ingress_sessions_origin() -> None:
    raw = body(exposure={"type": "Ingress"})
    raw["metadata"]["creationTimestamp"] = T1
    assert origin.claim_of(raw, POLICY) == {
        "demo-team-a.term.example.com": Claim(T1, "team-a", "demo", "/")
    }
    assert origin.claim_of(raw, IngressPolicy()) == {
        "": Claim(T1, "team-a", "demo", "/t/team-a/demo/")
    }
    assert origin.claim_of(body(), POLICY) == {}
    assert origin.claim_of({"spec": {}}, POLICY) == {}


def test_ingress_policy_comes_from_the_environment() -> None:
    cfg = OperatorConfig.from_env(
        {
            "EC2_TERMINAL_OPERATOR_SESSION_DOMAIN": DOMAIN,
            "EC2_TERMINAL_OPERATOR_SESSION_TLS": "true",
            "EC2_TERMINAL_OPERATOR_ALLOWED_HOSTS": "*.apps.example.com,term.example.org",
            "EC2_TERMINAL_OPERATOR_INGRESS_CLASS_NAME": "nginx",
            "EC2_TERMINAL_OPERATOR_ALLOWED_INGRESS_CLASSES": "nginx-internal",
            "EC2_TERMINAL_OPERATOR_ALLOW_SHARED_ORIGIN": "false",
            "EC2_TERMINAL_OPERATOR_CLUSTER_DOMAIN": "k8s.internal",
        }
    )
    assert cfg.ingress == IngressPolicy(
        session_domain=DOMAIN,
        session_tls=True,
        allowed_hosts=("*.apps.example.com", "term.example.org"),
        class_name="nginx",
        allowed_class_names=("nginx-internal",),
    )
    assert cfg.cluster_domain == "k8s.internal"
    assert OperatorConfig.from_env({}).ingress == IngressPolicy()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSION_DOMAIN", "Term.Example.com"),
        ("SESSION_DOMAIN", "x" * 190 + ".com"),
        ("ALLOWED_HOSTS", "*.example.com,bad host"),
        ("ALLOWED_HOSTS", "*"),
        ("INGRESS_CLASS_NAME", "a,b"),
        ("ALLOW_SHARED_ORIGIN", "maybe"),
    ],
)
def test_a_malformed_ingress_policy_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"EC2_TERMINAL_OPERATOR_{name}"):
        OperatorConfig.from_env({f"EC2_TERMINAL_OPERATOR_{name}": value})
