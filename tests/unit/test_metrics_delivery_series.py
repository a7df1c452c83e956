"""The delivery series kept as plain numbers export what prometheus_client's Counter and Histogram exported
for the same attempts and outcomes: names, help, types, labels, buckets, values and series order."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from tests.support.keys import sub_key

from openconnector.delivery.attempts import Attempt
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.gateway.metrics import LATENCY_BUCKETS, DeliveryMetricsObserver, GatewayMetrics

_OUTCOME_LABELS = {"delivered": "delivered", "deadLettered": "dead_lettered", "dropped": "dropped"}


class _Reference:
    """The four families as prometheus_client objects, fed as the gateway fed them before."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "openconnector_deliveries",
            "Events finished per subscription, by outcome (delivered, dead_lettered, dropped)",
            ["namespace", "subscription", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "openconnector_delivery_attempts",
            "HTTP delivery attempts, by status class (2xx, 4xx, 5xx, error)",
            ["namespace", "subscription", "code"],
            registry=r,
        )
        self.retries = Counter(
            "openconnector_delivery_retries", "Retry attempts", ["namespace", "subscription"], registry=r
        )
        self.latency = Histogram(
            "openconnector_delivery_latency_seconds",
            "Latency of delivery attempts",
            ["namespace", "subscription"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def attempt(self, ns: str, name: str, status: int | None, latency_ms: float, number: int) -> None:
        code = "error" if status is None else f"{status // 100}xx"
        self.attempts.labels(ns, name, code).inc()
        self.latency.labels(ns, name).observe(latency_ms / 1000)
        if number > 1:
            self.retries.labels(ns, name).inc()

    def outcome(self, ns: str, name: str, outcome: str) -> None:
        self.deliveries.labels(ns, name, _OUTCOME_LABELS[outcome]).inc()


def _without_created_values(text: str) -> str:
    # _created holds the moment a series was made: the same series, a different microsecond.
    return re.sub(r"^(\S+_created\{[^}]*\}) \S+$", r"\1 T", text, flags=re.MULTILINE)


def _families(text: str, names: tuple[str, ...]) -> str:
    keep = [line for line in text.splitlines() if any(name in line for name in names)]
    return "\n".join(keep)


_NAMES = (
    "openconnector_deliveries",
    "openconnector_delivery_attempts",
    "openconnector_delivery_retries",
    "openconnector_delivery_latency_seconds",
)

_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("attempt"),
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.none(), st.sampled_from([200, 202, 301, 404, 429, 500, 503])),
            st.one_of(st.sampled_from([0.0, 1.0, 2.5, 5.0, 10.0, 30000.0, 40000.0]), st.floats(0, 60000)),
            st.integers(1, 4),
        ),
        st.tuples(
            st.just("outcome"),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(list(FinalOutcome)),
            st.just(0.0),
            st.just(0),
        ),
        st.tuples(st.just("forget"), st.sampled_from(["a", "b", "c"]), st.none(), st.just(0.0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_steps)
def test_the_exposition_equals_prometheus_clients(steps: list[tuple[object, ...]]) -> None:
    metrics = GatewayMetrics()
    observer = DeliveryMetricsObserver(metrics)
    reference = _Reference()
    for step in steps:
        kind, name = step[0], str(step[1])
        key = sub_key(f"ns/{name}")
        if kind == "attempt":
            status, latency, count = step[2], step[3], step[4]
            assert status is None or isinstance(status, int)
            assert isinstance(latency, float)
            assert isinstance(count, int)
            latency_ms, number = latency, count
            attempt = Attempt(
                request_id="r", event_id="e", attempt=number, time=0.0, status_code=status,
                latency_ms=latency_ms, error=None, outcome="success",
            )  # fmt: skip
            observer.on_attempt(key, attempt)
            reference.attempt("ns", name, status, latency_ms, number)
        elif kind == "outcome":
            outcome = step[2]
            assert isinstance(outcome, FinalOutcome)
            observer.on_outcome(key, "e", outcome, None)
            reference.outcome("ns", name, outcome.value)
        else:
            metrics.forget_subscription(key)
            for metric in (reference.deliveries, reference.attempts, reference.retries, reference.latency):
                for labels in list(metric._metrics):
                    if labels[:2] == ("ns", name):
                        metric.remove(*labels)
    ours = _families(generate_latest(metrics.registry).decode(), _NAMES)
    theirs = _families(generate_latest(reference.registry).decode(), _NAMES)
    assert _without_created_values(ours) == _without_created_values(theirs)


def test_created_is_when_the_series_began() -> None:
    metrics = GatewayMetrics()
    observer = DeliveryMetricsObserver(metrics)
    attempt = Attempt(
        request_id="r", event_id="e", attempt=2, time=0.0, status_code=200, latency_ms=3.0, error=None,
        outcome="success",
    )  # fmt: skip
    observer.on_attempt(sub_key("ns/a"), attempt)
    observer.on_outcome(sub_key("ns/a"), "e", FinalOutcome.DELIVERED, None)
    reg = metrics.registry
    labels = {"namespace": "ns", "subscription": "a"}
    created = [
        reg.get_sample_value("openconnector_delivery_attempts_created", {**labels, "code": "2xx"}),
        reg.get_sample_value("openconnector_delivery_retries_created", labels),
        reg.get_sample_value("openconnector_delivery_latency_seconds_created", labels),
        reg.get_sample_value("openconnector_deliveries_created", {**labels, "outcome": "delivered"}),
    ]
    assert all(value is not None and value > 1_700_000_000 for value in created)
    assert reg.get_sample_value("openconnector_delivery_latency_seconds_sum", labels) == 0.003
    assert (
        reg.get_sample_value("openconnector_delivery_latency_seconds_bucket", {**labels, "le": "0.0025"}) == 0
    )
    assert (
        reg.get_sample_value("openconnector_delivery_latency_seconds_bucket", {**labels, "le": "0.005"}) == 1
    )
