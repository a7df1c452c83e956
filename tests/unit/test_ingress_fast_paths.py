"""The /events fast paths give exactly the general path's answer (properties over generated input)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.ce import CloudEvent
from openconnector.ce.depth import json_depth_exceeds, json_text_within_depth
from openconnector.gateway.events import depth_problems

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=40,
)
# Strings holding brackets: they count as openings in the text but nest nothing.
bracket_text = st.text(alphabet="[]{}ab", max_size=6)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@PROPERTY_SETTINGS
@given(json_values | st.lists(bracket_text | json_values, max_size=3), st.integers(1, 8))
def test_a_text_within_the_depth_bound_never_holds_deeper_data(value: Any, limit: int) -> None:
    text = orjson.dumps(value)
    if json_text_within_depth(text, limit):
        assert not json_depth_exceeds(value, limit)
        assert _depth(value) <= limit


def test_the_text_bound_is_a_shortcut_not_a_verdict() -> None:
    # Deep enough to need the walk: the bound says "walk", the walk decides.
    assert not json_text_within_depth(b'[["[[[["]]', 3)
    assert not json_depth_exceeds(orjson.loads(b'[["[[[["]]'), 3)
    assert json_text_within_depth(b"[[[]]]", 3)
    assert not json_text_within_depth(b"[[[[]]]]", 3)


def _events_of(body: bytes, *, batch: bool) -> list[CloudEvent]:
    document = orjson.loads(body)
    items = document if batch else [document]
    return [CloudEvent({"id": "1"}, item) for item in items]


@PROPERTY_SETTINGS
@given(st.lists(json_values, min_size=1, max_size=3), st.integers(1, 6), st.booleans())
def test_depth_problems_with_the_body_equal_those_without(values: list[Any], limit: int, batch: bool) -> None:
    body = orjson.dumps(values if batch else values[0])
    events = _events_of(body, batch=batch)
    assert depth_problems(events, limit, batch=batch, body=body) == depth_problems(events, limit, batch=batch)


def test_binary_data_is_never_walked_with_or_without_the_body() -> None:
    events = [CloudEvent({"id": "1"}, b"[[[[[[")]
    assert depth_problems(events, 2, batch=False, body=b"[[[[[[") == []
