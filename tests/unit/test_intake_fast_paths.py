"""The webhook intake's fast paths give exactly the general path's answer (issue 15: hot path).

Each fast path skips work for the common case; these tests pin that it answers as the general code does,
over generated inputs (Hypothesis) as well as the edge cases.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.ce import check_nlgov
from openconnector.ce.codec import INT32_MAX, CloudEventError
from openconnector.ce.emit import build_checked_event, build_event
from openconnector.consumers.verifiers import AuthOutcome, InboundAuthConfig, compile_verifier
from openconnector.gateway.core import Gateway
from openconnector.resources import ResourceKey
from openconnector.routing.table import EventRoute

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
