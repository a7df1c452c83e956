"""The gateway's counters and histograms kept as plain numbers export what prometheus_client's Counter and
Histogram export for the same calls: names, help, types, labels, buckets, values and series order."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from openconnector.gateway.metrics import (
    LATENCY_BUCKETS,
    PARSE_BUCKETS,
    GatewayMetrics,
    PlainCounter,
    PlainHistogram,
    counter_inc,
)


def _masked(registry: CollectorRegistry) -> str:
    # _created holds the moment a series began: the same series, a different microsecond.
    text = generate_latest(registry).decode()
    return re.sub(r"^(\S+_created\{[^}]*\}) \S+$", r"\1 T", text, flags=re.MULTILINE)


_labels = st.sampled_from(["a", "b", "/events", "x y", 'q"uote'])
_counter_steps = st.lists(
    st.tuples(
        st.sampled_from(["inc", "add", "remove"]),
        _labels,
        _labels,
        st.one_of(st.integers(0, 5000), st.floats(0, 1e6)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_counter_steps)
def test_a_plain_counter_exports_what_a_counter_exports(steps: list[tuple[str, str, str, float]]) -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = PlainCounter("things", "Things seen", ["namespace", "kind"], ours_registry)
    theirs = Counter("things", "Things seen", ["namespace", "kind"], registry=theirs_registry)
    for op, first, second, amount in steps:
        if op == "inc":
            ours.labels(first, second).inc(amount)
            theirs.labels(first, second).inc(amount)
        elif op == "add":
            counter_inc(ours.labels(first, second))(amount)
            counter_inc(theirs.labels(first, second))(amount)
        else:
            ours.remove(first, second)
            if (first, second) in theirs._metrics:
                theirs.remove(first, second)
    assert _masked(ours_registry) == _masked(theirs_registry)


_observations = st.lists(
    st.tuples(
        st.sampled_from(["observe", "remove"]),
        _labels,
        st.one_of(
            st.sampled_from([0.0, *PARSE_BUCKETS, *LATENCY_BUCKETS, 100.0, math.inf, -1.0]),
            st.floats(-1, 100, allow_nan=False),
        ),
    ),
    max_size=40,
)


@pytest.mark.parametrize("buckets", [PARSE_BUCKETS, LATENCY_BUCKETS])
@settings(max_examples=100, deadline=None)
@given(steps=_observations)
def test_a_plain_histogram_exports_what_a_histogram_exports(
    buckets: tuple[float, ...], steps: list[tuple[str, str, float]]
) -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = PlainHistogram("took_seconds", "Time taken", ["mode"], ours_registry, buckets=buckets)
    theirs = Histogram("took_seconds", "Time taken", ["mode"], buckets=buckets, registry=theirs_registry)
    for op, mode, amount in steps:
        if op == "observe":
            ours.labels(mode).observe(amount)
            theirs.labels(mode).observe(amount)
        else:
            ours.remove(mode)
            if (mode,) in theirs._metrics:
                theirs.remove(mode)
    assert _masked(ours_registry) == _masked(theirs_registry)


def test_refusals_of_the_library_stay() -> None:
    counter = PlainCounter("things", "Things seen", ["kind"], CollectorRegistry())
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="label values"):
        counter.labels("a", "b")
    registry = CollectorRegistry()
    PlainCounter("things", "Things seen", ["kind"], registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("things", "Things seen", ["kind"], registry=registry)


def test_the_hot_path_helpers_reach_the_plain_series() -> None:
    metrics = GatewayMetrics()
    metrics.inc_of(metrics.ingress_bytes, "/events")(100)
    metrics.inc_of(metrics.events_received, "binary")(1)
    metrics.child(metrics.parse_seconds, "binary").observe(0.00003)
    metrics.webhooks_rejected.labels("ns", "c", "unauthorized").inc()
    reg = metrics.registry
    assert reg.get_sample_value("openconnector_ingress_bytes_total", {"endpoint": "/events"}) == 100
    assert reg.get_sample_value("openconnector_events_received_total", {"mode": "binary"}) == 1
    assert reg.get_sample_value("openconnector_cloudevent_parse_seconds_count", {"mode": "binary"}) == 1
    bucket = "openconnector_cloudevent_parse_seconds_bucket"
    assert reg.get_sample_value(bucket, {"mode": "binary", "le": "2.5e-05"}) == 0
    assert reg.get_sample_value(bucket, {"mode": "binary", "le": "5e-05"}) == 1
    labels = {"namespace": "ns", "consumer": "c", "reason": "unauthorized"}
    assert reg.get_sample_value("openconnector_webhooks_rejected_total", labels) == 1
