"""The webhook intake's fast paths give exactly the general path's answer (issue 15: hot path).

Each fast path skips work for the common case; these tests pin that it answers as the general code does,
over generated inputs (Hypothesis) as well as the edge cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.ce import check_nlgov
from openconnector.ce.codec import INT32_MAX, CloudEventError
from openconnector.ce.depth import json_depth_exceeds
from openconnector.ce.emit import build_checked_event, build_event
from openconnector.consumers.ingest import _depth_exceeds
from openconnector.consumers.verifiers import AuthOutcome, InboundAuthConfig, compile_verifier
from openconnector.gateway.core import Gateway
from openconnector.refusal import Refusal
from openconnector.resources import Resource, ResourceKey
from openconnector.routing.compiler import compile_table
from openconnector.routing.table import EventRoute, RoutingTable, SubscriptionRoute

TYPE = "nl.vng.zgw.zaken.zaak.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:openconnector"

# Types and sources as a user may write them: conformant, and breaking the NL GOV profile in many ways.
types = st.one_of(
    st.just(TYPE),
    st.from_regex(r"[a-z]{2,4}(\.[a-z0-9_-]{1,6}){1,4}(\.v[0-9])?", fullmatch=True),
    st.text(min_size=1, max_size=30),
)
sources = st.one_of(
    st.just(SOURCE),
    st.from_regex(r"urn:nld:oin:[0-9]{18,21}:systeem:[a-z]{1,8}", fullmatch=True),
    st.from_regex(r"https://[a-z]{1,8}\.example\.nl/[a-z]{0,8}", fullmatch=True),
    st.text(min_size=1, max_size=30),
)
json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
sequences = st.one_of(st.integers(1, 5), st.integers(INT32_MAX - 3, INT32_MAX), st.integers(1, INT32_MAX))


def _without_id_and_time(attributes: dict[str, Any]) -> list[tuple[str, Any]]:
    # Ordered: the attributes' order is the order of the structured encoding.
    return [(k, v) for k, v in attributes.items() if k not in ("id", "time")]


@settings(max_examples=300)
@given(types, sources, json_data, st.none() | st.just("https://schemas.example.nl/v1.json"), sequences)
def test_build_checked_event_is_build_event_without_validation(
    type_: str, source: str, data: Any, dataschema: str | None, sequence: int
) -> None:
    fast = build_checked_event(type_, source, data, dataschema, sequence)
    general = build_event(
        type=type_, source=source, data=data, dataschema=dataschema, sequence=sequence, validate=False
    )
    assert _without_id_and_time(fast.attributes) == _without_id_and_time(general.attributes)
    assert list(fast.attributes) == list(general.attributes)
    assert (fast.data, fast.data_null) == (general.data, general.data_null)
    assert len(fast.id) == len(general.id) == 36
    assert len(fast.time or "") == len(general.time or "") == 24


@pytest.mark.parametrize("sequence", [0, -1, INT32_MAX + 1])
def test_build_checked_event_refuses_a_sequence_out_of_range_as_build_event_does(sequence: int) -> None:
    with pytest.raises(CloudEventError) as fast:
        build_checked_event(TYPE, SOURCE, None, None, sequence)
    with pytest.raises(CloudEventError) as general:
        build_event(type=TYPE, source=SOURCE, data=None, sequence=sequence, validate=False)
    assert [p.detail for p in fast.value.problems] == [p.detail for p in general.value.problems]


def _route(type_: str, source: str, dataschema: str | None = None) -> EventRoute:
    key = ResourceKey("Event", "ns", "ev")
    return EventRoute(key, type_, source, "nl-gov", True, dataschema, None)


@settings(max_examples=300)
@given(types, sources, json_data, st.none() | st.text(min_size=1, max_size=8), st.integers(0, INT32_MAX))
def test_gateway_nlgov_verdict_is_check_nlgov_of_each_built_event(
    type_: str, source: str, data: Any, subject: str | None, last_sequence: int
) -> None:
    gateway = Gateway()
    route = _route(type_, source)
    gateway.sequences = type(gateway.sequences)({str(route.key): last_sequence})  # wraps at INT32_MAX too
    try:
        built = gateway.build_event_for(route, data, subject=subject)
    except CloudEventError:
        return  # a subject makes the whole event validated: nothing is emitted, nothing checked
    assert gateway.nlgov_problems(route) == tuple(check_nlgov(built))


def test_gateway_nlgov_verdict_names_the_broken_attributes() -> None:
    gateway = Gateway()
    assert gateway.nlgov_problems(_route(TYPE, SOURCE)) == ()
    problems = gateway.nlgov_problems(_route("created", "not a uri"))
    assert [p.attribute for p in problems] == ["type", "source"]


def test_auth_none_outcome_is_the_general_one() -> None:
    verifier = compile_verifier(InboundAuthConfig(type="none"))
    outcome = verifier.verify(headers={"Authorization": "Bearer x"}, query={}, body=b"{}", now=0.0)
    assert outcome == AuthOutcome("none")
    assert (outcome.message_id, outcome.replay_ttl, outcome.replay_key, dict(outcome.claims)) == (
        None,
        None,
        None,
        {},
    )


# ---------------------------------------------------------------------------------------- publish


def _gateway_with(*items: Resource) -> Gateway:
    gateway = Gateway()
    gateway.install(compile_table({r.key: r for r in items}, {}, version=1))
    return gateway


def _event_resource(type_: str = TYPE) -> Resource:
    return Resource(
        kind="Event", namespace="ns", name="ev", spec={"name": "ev", "type": type_, "source": SOURCE}
    )


def _pull_subscription() -> Resource:
    spec = {"eventType": TYPE, "endpoint": "http://127.0.0.1:1/x", "style": "pull"}
    return Resource(kind="EventSubscription", namespace="ns", name="pull", spec=spec)


def _emitted(gateway: Gateway, label: str) -> float | None:
    return gateway.metrics.registry.get_sample_value("openconnector_events_emitted_total", {"type": label})


@pytest.mark.parametrize("pull", [False, True], ids=["unsubscribed", "pull-only"])
async def test_publishing_with_nothing_to_queue_counts_the_event(pull: bool) -> None:
    gateway = _gateway_with(_event_resource(), *([_pull_subscription()] if pull else []))
    event = build_event(type=TYPE, source=SOURCE, data={"a": 1})
    assert await gateway.publish([event], namespace="ns") == (1 if pull else 0)
    assert await gateway.publish([event]) == (1 if pull else 0)  # /events: where its Event is defined
    assert gateway.event_stats[ResourceKey("Event", "ns", "ev")].published == 2
    assert _emitted(gateway, TYPE) == 2


async def test_publishing_an_undefined_type_counts_it_as_other() -> None:
    gateway = _gateway_with(_event_resource())
    other = build_event(type="nl.example.other.created", source=SOURCE, data=None)
    assert await gateway.publish([other], namespace="ns") == 0
    assert _emitted(gateway, "other") == 1
    assert gateway.event_stats[ResourceKey("Event", "ns", "ev")].published == 0


@pytest.mark.parametrize("pull", [False, True], ids=["unsubscribed", "pull-only"])
async def test_a_closed_bus_refuses_even_an_event_with_nothing_to_queue(pull: bool) -> None:
    gateway = _gateway_with(_event_resource(), *([_pull_subscription()] if pull else []))
    await gateway.dispatcher.close(0)
    event = build_event(type=TYPE, source=SOURCE, data=None)
    with pytest.raises(Refusal) as refused:
        await gateway.publish([event], namespace="ns")
    assert (refused.value.status, refused.value.slug, refused.value.headers) == (
        503,
        "shutting-down",
        {"Retry-After": "5"},
    )
    assert _emitted(gateway, TYPE) is None


# ------------------------------------------------------------------------------------------ depth

decoded_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500)
@given(decoded_json, st.integers(0, 6))
def test_the_body_depth_check_is_json_depth_exceeds(payload: Any, limit: int) -> None:
    assert _depth_exceeds(payload, limit) == json_depth_exceeds(payload, limit)


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_the_body_depth_check_on_flat_and_nested_objects(limit: int) -> None:
    payloads: list[Any] = [
        {},
        {"a": 1, "b": "x", "c": None, "d": 1.5, "e": True},
        {"a": {}},
        {"a": [1]},
        [],
        "x",
    ]
    for payload in payloads:
        assert _depth_exceeds(payload, limit) == json_depth_exceeds(payload, limit)


# ------------------------------------------------------------------------------------------ match

MATCH_TYPES = ("nl.example.a.created", "nl.example.b.created")
MATCH_SOURCES = ("urn:nld:one", "urn:nld:two")
FILTERS: tuple[Any, ...] = (
    None,
    [],
    {},
    [{"exact": {"subject": "zaak-1"}}],
    [{"prefix": {"subject": "zaak"}}],
    [{"not": {"exact": {"subject": "zaak-1"}}}],
)


@st.composite
def subscription_resources(draw: st.DrawFn, index: int) -> Resource:
    spec: dict[str, Any] = {
        "eventType": draw(st.sampled_from((*MATCH_TYPES, "*"))),
        "endpoint": f"http://127.0.0.1:1/{index}",
    }
    source = draw(st.none() | st.sampled_from(MATCH_SOURCES))
    if source is not None:
        spec["source"] = source
    filters = draw(st.sampled_from(FILTERS))
    if filters is not None:
        spec["filters"] = filters
    if draw(st.booleans()):
        spec["status"] = "paused"
    namespace = draw(st.sampled_from(("ns", "other")))
    return Resource(kind="EventSubscription", namespace=namespace, name=f"s{index}", spec=spec)


def _reference_match(
    table: RoutingTable, namespace: str, attributes: dict[str, Any], data: Any
) -> list[SubscriptionRoute]:
    # RoutingTable.match as it was before its per-(namespace, type, source) cache.
    candidates: Sequence[SubscriptionRoute] = table.subscriptions_by_namespace_type.get(
        (namespace, attributes["type"]), ()
    )
    wildcard = table.wildcard_subscriptions.get(namespace)
    if wildcard:
        candidates = (*candidates, *wildcard)
    source = attributes.get("source")
    return [
        sub
        for sub in candidates
        if not sub.paused and (sub.source is None or sub.source == source) and sub.matches(attributes, data)
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 8).flatmap(lambda n: st.tuples(*(subscription_resources(i) for i in range(n)))),
    st.lists(
        st.tuples(
            st.sampled_from(("ns", "other", "nowhere")),
            st.sampled_from((*MATCH_TYPES, "nl.example.c.created")),
            st.sampled_from(MATCH_SOURCES),
            st.sampled_from(("zaak-1", "zaak-2", "other")),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_the_cached_match_is_the_general_match(
    subscriptions: tuple[Resource, ...], events: list[tuple[str, str, str, str]]
) -> None:
    table = compile_table({r.key: r for r in subscriptions}, {}, version=1)
    for namespace, type_, source, subject in events * 2:  # first from scratch, then from the cache
        attributes = {"specversion": "1.0", "id": "1", "type": type_, "source": source, "subject": subject}
        found = table.match(namespace, attributes, None)
        assert found == _reference_match(table, namespace, attributes, None)
        found.clear()  # a caller may change its list: the cache must not share it
        assert table.match(namespace, attributes, None) == _reference_match(
            table, namespace, attributes, None
        )


def test_unfiltered_is_set_only_for_no_filters() -> None:
    resources = [
        Resource(
            kind="EventSubscription",
            namespace="ns",
            name=f"s{i}",
            spec={
                "eventType": TYPE,
                "endpoint": "http://127.0.0.1:1/x",
                **({} if f is None else {"filters": f}),
            },
        )
        for i, f in enumerate(FILTERS)
    ]
    table = compile_table({r.key: r for r in resources}, {}, version=1)
    assert [s.unfiltered for s in sorted(table.subscriptions(), key=lambda s: s.key.name)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
