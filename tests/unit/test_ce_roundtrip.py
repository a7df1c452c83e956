"""Property: any valid event survives binary mode and structured mode unchanged."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.ce import (
    CloudEvent,
    ContentMode,
    check_nlgov,
    parse_http,
    to_batch,
    to_binary,
    to_structured,
    validate_event,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

_NONCHARACTERS = {chr(c) for c in range(0xFDD0, 0xFDF0)} | {
    chr(plane * 0x10000 + low) for plane in range(17) for low in (0xFFFE, 0xFFFF)
}

_CONTROLS = {chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}

# CloudEvents String: any Unicode except controls, surrogates and noncharacters.
ce_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters=_CONTROLS | _NONCHARACTERS), max_size=30
)
# JSON strings: anything UTF-8 can carry (no lone surrogates).
json_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
ce_text_nonempty = ce_text.filter(bool)

# URI-references built from arbitrary unicode by percent-encoding it.
uri_tail = ce_text.map(lambda s: quote(s, safe="/:@-._~"))
sources = st.one_of(
    st.builds(
        lambda oin, name: f"urn:nld:oin:{oin}:systeem:{name}",
        st.from_regex(r"[0-9]{20}", fullmatch=True),
        uri_tail.map(lambda s: s.replace(":", "%3A")),
    ),
    uri_tail.map(lambda s: "https://example.nl/" + s),
    st.just("/sensors/tn-1234567/alerts"),
    st.just("mailto:cncf-wg-serverless@lists.cncf.io"),
)
times = st.builds(
    lambda m, sep, fraction, zone: (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}{sep}{m.hour:02d}:{m.minute:02d}:{m.second:02d}{fraction}{zone}"
    ),
    st.datetimes(),
    st.sampled_from(["T", "t"]),
    st.sampled_from(["", ".1", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "-05:30", "+14:00"]),
)
reserved = {"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time", "data"}
extension_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(lambda n: n not in reserved)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_text, children, max_size=4),
    ),
    max_leaves=12,
)
json_content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/vnd.zaak+json", "text/json"]
)
binary_content_types = st.sampled_from(
    [None, "application/octet-stream", "text/plain; charset=utf-8", "image/png"]
)


@st.composite
def events(draw: st.DrawFn, *, typed_extensions: bool, text_data: bool) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(ce_text_nonempty),
        "source": draw(sources),
        "type": draw(ce_text_nonempty),
    }
    if draw(st.booleans()):
        attributes["subject"] = draw(ce_text_nonempty)
    if draw(st.booleans()):
        attributes["time"] = draw(times)
    if draw(st.booleans()):
        attributes["dataschema"] = "https://schemas.example.nl/" + draw(uri_tail)
    values = (
        st.one_of(ce_text, st.integers(-(2**31), 2**31 - 1), st.booleans()) if typed_extensions else ce_text
    )
    attributes.update(draw(st.dictionaries(extension_names, values, max_size=4)))

    kinds = ["none", "json", "bytes"] + (["text"] if text_data else [])
    kind = draw(st.sampled_from(kinds))
    data: object = None
    if kind == "json":
        attributes["datacontenttype"] = draw(json_content_types)
        data = draw(json_values)
    elif kind == "bytes":
        content_type = draw(binary_content_types)
        if content_type is not None:
            attributes["datacontenttype"] = content_type
        data = draw(st.binary(min_size=1, max_size=40))  # an empty binary body means "no data"
    elif kind == "text":
        attributes["datacontenttype"] = "text/plain"
        data = draw(json_text)
    elif draw(st.booleans()):
        attributes["datacontenttype"] = draw(json_content_types)
    event = CloudEvent(attributes, data)
    assert validate_event(event) == []
    return event


@PROPERTY_SETTINGS
@given(events(typed_extensions=False, text_data=False))
def test_binary_mode_round_trip(event: CloudEvent) -> None:
    headers, body = to_binary(event)
    assert all(0x21 <= ord(c) <= 0x7E for name, v in headers.items() if name.startswith("ce-") for c in v)
    result = parse_http("POST", headers, body)
    assert result.mode is ContentMode.BINARY
    assert result.events == (event,)


@PROPERTY_SETTINGS
@given(events(typed_extensions=True, text_data=True))
def test_structured_mode_round_trip(event: CloudEvent) -> None:
    headers, body = to_structured(event)
    result = parse_http("POST", headers, body)
    assert result.mode is ContentMode.STRUCTURED
    assert result.events == (event,)


@PROPERTY_SETTINGS
@given(st.lists(events(typed_extensions=True, text_data=True), max_size=4))
def test_batch_round_trip(batch: list[CloudEvent]) -> None:
    headers, body = to_batch(batch)
    assert parse_http("POST", headers, body).events == tuple(batch)


@PROPERTY_SETTINGS
@given(events(typed_extensions=False, text_data=False))
def test_binary_to_structured_to_binary(event: CloudEvent) -> None:
    (via_binary,) = parse_http("POST", *to_binary(event)).events
    (via_structured,) = parse_http("POST", *to_structured(via_binary)).events
    assert via_structured == event


@PROPERTY_SETTINGS
@given(ce_text)
def test_nlgov_never_crashes_on_any_type(type_: str) -> None:
    event = CloudEvent({"specversion": "1.0", "id": "1", "source": "urn:nld:x", "type": type_ or "x"}, None)
    assert all(p.attribute == "type" for p in check_nlgov(event))
