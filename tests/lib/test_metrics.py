"""hivewire.metrics helpers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from hivewire import metrics


def _samples(h: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for m in h.collect() for s in m.samples if not s.name.endswith("_created")]


@pytest.mark.parametrize("amount", [0.0, 0.0003, 0.001, 0.0042, 0.5, 99.0])
def test_observe_many_counts_as_n_observations(amount: float) -> None:
    """A batch's shared latency observed once for its n requests reads exactly as n observes
    (same buckets, including on a bound and past the last, same sum and count)."""
    buckets = (0.0005, 0.001, 0.0025, 0.005, 1.0)
    one = Histogram("t_one_seconds", "d", ["e"], buckets=buckets, registry=CollectorRegistry())
    many = Histogram("t_one_seconds", "d", ["e"], buckets=buckets, registry=CollectorRegistry())
    for _ in range(7):
        one.labels("x").observe(amount)
    metrics.observe_many(many.labels("x"), amount, 7)
    got, want = _samples(many), _samples(one)
    assert [s for s in got if not s[0].endswith("_sum")] == [s for s in want if not s[0].endswith("_sum")]
    assert [s[2] for s in got if s[0].endswith("_sum")] == pytest.approx([s[2] for s in want if s[0].endswith("_sum")])


def test_observe_many_without_the_internals_observes_one_at_a_time() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    h = Plain()
    metrics.observe_many(h, 0.25, 3)  # type: ignore[arg-type]
    assert h.seen == [0.25, 0.25, 0.25]
