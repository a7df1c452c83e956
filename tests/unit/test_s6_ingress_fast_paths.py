"""The /events single-event lane gives exactly the general path's answer (properties over generated input).

Covered: the NL GOV conformance predicate (true only when ``check_nlgov`` finds nothing), the per-table
definitions cache (``defining_events``' answer), the single-event lane (``check_events`` would find nothing)
and the 202 (same body and headers as the general ``web.Response(..., content_type=)``).
"""

from __future__ import annotations

import gc
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent, check_nlgov
from openconnector.ce.nlgov import nlgov_conforms
from openconnector.gateway import events as events_module
from openconnector.gateway.events import check_events, defining_events
from openconnector.gateway.intake import JSON_ANSWER_HEADERS
from openconnector.routing.table import EventRoute, RoutingTable

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None)

TYPE = "nl.vng.zgw.zaken.zaak.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:zaaksysteem"

types = st.sampled_from(
    [TYPE, "nl.brp.persoon-verhuisd.v2", "nl.x.v1.y", "nl.x.v1.v2", "created", "n.x", "nl..x", "x" * 300, ""]
)
sources = st.sampled_from(
    [SOURCE, "https://zaken.example.nl", "urn:uuid:1", "urn:nld:oin:123:systeem:x", "urn:nld:", "/relative",
     "not a uri", "urn:nld:oin:" + "1" * 20 + ":" + "x" * 300]
)  # fmt: skip
sequences = st.sampled_from(
    [None, "1", "42", "2147483647", "2147483648", "01", "0", "", "x", "99999999999", 7]
)
sequence_types = st.sampled_from([None, "Integer", "integer", "String", 3])
content_types = st.sampled_from(
    [None, "application/json", "application/cloudevents+json", "text/json", "text/plain", "bad", 5]
)
extension_names = st.sampled_from(["x1", "traceparent", "a" * 20, "a" * 21, "averyveryverylongextension"])
extension_values = st.sampled_from(["v", 1, True])
data_values = st.sampled_from([None, b"\x00raw", {"a": 1}, "text", [1, 2]])


@st.composite
def nlgov_events(draw: st.DrawFn) -> CloudEvent:
    attributes: dict[str, Any] = {"specversion": "1.0", "id": "e-1"}
    if draw(st.booleans()):
        attributes["type"] = draw(types)
    if draw(st.booleans()):
        attributes["source"] = draw(sources)
    for name, values in (("sequence", sequences), ("sequencetype", sequence_types)):
        value = draw(values)
        if value is not None:
            attributes[name] = value
    content_type = draw(content_types)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    attributes.update(draw(st.dictionaries(extension_names, extension_values, max_size=3)))
    return CloudEvent(attributes, draw(data_values))


@PROPERTY_SETTINGS
@given(nlgov_events())
def test_nlgov_conforms_only_when_check_nlgov_finds_nothing(event: CloudEvent) -> None:
    if nlgov_conforms(event):
        assert check_nlgov(event) == []


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"sequence": "42", "sequencetype": "Integer"},
        {"datacontenttype": "application/json", "subject": "zaak-17", "time": "2026-11-28T12:00:00Z"},
        {"traceparent": "00-1-2-01", "n": 7},
    ],
)
def test_nlgov_conforms_finds_a_conformant_event_at_once(extra: dict[str, Any]) -> None:
    event = CloudEvent({"specversion": "1.0", "id": "1", "type": TYPE, "source": SOURCE, **extra}, {"a": 1})
    assert check_nlgov(event) == []
    assert nlgov_conforms(event)


# --- the definitions cache and the single-event lane ------------------------------------------------


def _validator(data: Any) -> list[str]:
    return [] if isinstance(data, dict) else ["/: must be an object"]


def _table(definitions: list[tuple[str, str, str, bool]]) -> RoutingTable:
    """Events as (namespace, type, profile, with a schema)."""
    by_namespace_type = {
        (ns, type_): EventRoute(
            ResourceKey("Event", ns, f"ev-{i}"),
            type_,
            SOURCE,
            profile,  # type: ignore[arg-type]
            True,
            None,
            _validator if schema else None,
        )
        for i, (ns, type_, profile, schema) in enumerate(definitions)
    }
    return RoutingTable(1, {}, by_namespace_type, {}, {}, {}, {}, {})


table_definitions = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from([TYPE, "nl.x.y"]),
        st.sampled_from(["nl-gov", "cloudevents"]),
        st.booleans(),
    ),
    max_size=4,
)


@PROPERTY_SETTINGS
@given(
    table_definitions,
    nlgov_events(),
    st.sampled_from([None, "a", "b", "c"]),
    st.booleans(),
)
def test_the_single_event_lane_is_taken_only_when_check_events_finds_nothing(
    definitions: list[tuple[str, str, str, bool]], event: CloudEvent, namespace: str | None, unknown: bool
) -> None:
    table = _table(definitions)
    attributes = {"type": "nl.x.y", **event.attributes}  # every CloudEvent has a type
    event = CloudEvent(attributes, event.data)
    found, schemaless = events_module._definitions_of(table, event.type, namespace)
    assert found == defining_events(table, event.type, namespace)
    assert schemaless == all(d.validate_data is None for d in found)
    if found and schemaless and nlgov_conforms(event):
        general = check_events(table, [event], allow_unknown_types=unknown, batch=False, namespace=namespace)
        assert general == ([], [], True)


def test_the_definitions_cache_is_per_table_and_lets_a_replaced_table_go() -> None:
    first = _table([("a", TYPE, "nl-gov", False)])
    assert [d.key.namespace for d in events_module._definitions_of(first, TYPE, None)[0]] == ["a"]
    second = _table([("b", TYPE, "nl-gov", True)])
    found, schemaless = events_module._definitions_of(second, TYPE, None)
    assert ([d.key.namespace for d in found], schemaless) == (["b"], False)
    del first
    gc.collect()
    cache = events_module._definitions
    assert cache is not None
    assert cache.table() is second


def test_the_definitions_cache_stays_bounded() -> None:
    table = _table([])
    for i in range(events_module._DEFINITIONS_CACHED + 10):
        assert events_module._definitions_of(table, f"t{i}", None) == ([], True)
    cache = events_module._definitions
    assert cache is not None
    assert len(cache.found) == events_module._DEFINITIONS_CACHED


# --- the 202 ----------------------------------------------------------------------------------------


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_the_accepted_body_is_the_general_answer(accepted: int, deliveries: int) -> None:
    expected = orjson.dumps({"accepted": accepted, "deliveries": deliveries})
    assert events_module._accepted_body(accepted, deliveries) == expected


async def _head_of(response: web.Response) -> tuple[str, list[tuple[str, str]]]:
    written: list[tuple[str, list[tuple[str, str]]]] = []

    async def write_headers(status_line: str, headers: CIMultiDict[str]) -> None:
        written.append((status_line, [(str(k), v) for k, v in headers.items()]))

    request = make_mocked_request("POST", "/events")
    request._payload_writer.write_headers = write_headers  # type: ignore[method-assign]
    await response.prepare(request)
    (head,) = written
    return head[0], [(k, v) for k, v in head[1] if k != "Date"]


async def test_the_202_head_is_the_general_one() -> None:
    body = events_module._accepted_body(1, 0)
    general = web.Response(body=body, status=202, content_type="application/json")
    fast = web.Response(body=body, status=202, headers=JSON_ANSWER_HEADERS)
    assert fast.body == general.body
    fast_head = await _head_of(fast)
    assert fast_head == await _head_of(general)
    assert fast_head[1][0] == ("Content-Type", "application/json")
    # Each answer has its own headers: the shared block is only copied.
    assert fast.headers is not JSON_ANSWER_HEADERS
    assert list(JSON_ANSWER_HEADERS.items()) == [("Content-Type", "application/json")]
