"""The operator's /metrics: each reconcile pass counted by how it ended and timed, scraped from a
real operator on the local control plane; and how a pass's failure is classified."""

from __future__ import annotations

import httpx
import pytest
import urllib3
from ec2_terminal_operator.metrics import OperatorMetrics, PassResult, classify
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures_kube import KubeCluster
from tests.fixtures_operator import OperatorFactory, key_secret, session_manifest
from tests.support import poll

TOTAL = "ec2_terminal_operator_reconcile_total"
SECONDS_COUNT = "ec2_terminal_operator_reconcile_seconds_count"


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (None, PassResult.OK),
        (ApiException(status=403, reason="Forbidden"), PassResult.RETRY),
        (ApiException(status=500), PassResult.RETRY),
        (urllib3.exceptions.ProtocolError("connection aborted"), PassResult.RETRY),
        (ConnectionRefusedError(), PassResult.RETRY),
        (KeyError("spec"), PassResult.ERROR),
    ],
)
def test_a_pass_ends_ok_retry_or_error_by_what_it_raised(
    error: BaseException | None, result: PassResult
) -> None:
    assert classify(error) is result


def test_a_pass_is_counted_timed_and_its_error_raised_on() -> None:
    metrics = OperatorMetrics()
    with metrics.reconcile_pass("team", "web"):
        pass
    with pytest.raises(ApiException), metrics.reconcile_pass("team", "web"):
        raise ApiException(status=409)
    with pytest.raises(KeyError), metrics.reconcile_pass("team", "web"):
        raise KeyError("spec")

    def value(name: str, labels: dict[str, str] | None = None) -> float | None:
        return metrics.registry.get_sample_value(name, labels or {})

    counts = {r.value: value(TOTAL, {"result": r.value}) for r in PassResult}
    assert counts == {"ok": 1.0, "retry": 1.0, "error": 1.0}
    assert value(SECONDS_COUNT) == 3.0


def scraped(url: str) -> dict[tuple[str, str], float]:
    """The operator's reconcile samples, by (name, result label)."""
    text = httpx.get(url, timeout=5, trust_env=False).text
    return {
        (sample.name, sample.labels.get("result", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (TOTAL, SECONDS_COUNT)
    }


@pytest.mark.cluster
@pytest.mark.slow
def test_the_operator_counts_its_passes_by_result_on_metrics(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    operator = operator_factory(namespace)
    before = scraped(operator.metrics_url)
    # Every result is there from the start, at zero, so each dashboard query has its series.
    assert {before[(TOTAL, r.value)] for r in PassResult} == {0.0}
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(session_manifest("counted"), namespace=namespace)

    def passed() -> dict[tuple[str, str], float]:
        samples = scraped(operator.metrics_url)
        return samples if samples[(TOTAL, "ok")] >= 2 else {}

    samples = poll(passed, timeout=60, what="two ok passes on the operator's /metrics")
    assert samples[(SECONDS_COUNT, "")] >= samples[(TOTAL, "ok")]

    # The API server refuses the next session's pod (a quota of no pods): its passes fail
    # and are retried, and are counted so; nothing is a fault of the operator.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    kube_cluster.apply(quota, namespace=namespace)
    kube_cluster.apply(session_manifest("refused"), namespace=namespace)

    def retried() -> dict[tuple[str, str], float]:
        samples = scraped(operator.metrics_url)
        return samples if samples[(TOTAL, "retry")] >= 1 else {}

    samples = poll(retried, timeout=60, what="a retried pass on the operator's /metrics")
    assert samples[(TOTAL, "error")] == 0, operator.log()
