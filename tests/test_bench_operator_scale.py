"""bench/operator_scale.py's concurrent creation: every object once, in at most N slices."""

from __future__ import annotations

from typing import Any

import pytest

from bench.operator_scale import slices


@pytest.mark.parametrize(("count", "workers"), [(100, 16), (100, 1), (1000, 16), (3, 16), (16, 16)])
def test_slices_cover_every_object_once(count: int, workers: int) -> None:
    items: list[dict[str, Any]] = [{"n": i} for i in range(count)]
    parts = slices(items, workers)
    assert len(parts) == min(count, workers)
    assert all(parts)
    assert [x for part in parts for x in part] == items
    sizes = {len(part) for part in parts}
    assert max(sizes) - min(sizes) <= 1


def test_one_worker_is_one_serial_create() -> None:
    items: list[dict[str, Any]] = [{"n": i} for i in range(5)]
    assert slices(items, 1) == [items]
    assert slices(items, 0) == [items]


def test_the_bench_counts_requests_net_of_its_own_creates_and_polls() -> None:
    from collections import Counter

    from bench.operator_scale import by_kind, net_of_bench

    seen = Counter({("POST", "pods"): 100, ("LIST", "pods"): 7, ("POST", "pods/binding"): 100})
    net = net_of_bench(seen, "pods", 100, 7)
    assert by_kind(net) == {"POST pods/binding": 100}
    assert seen[("POST", "pods")] == 100  # the caller's counts are left as they were
