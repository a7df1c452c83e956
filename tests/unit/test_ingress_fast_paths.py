"""The /events fast paths give exactly the general path's answer (properties over generated input)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from openconnector.ce import CloudEvent, CloudEventError, codec, parse_http
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


# --- the codec's one-pass checks -----------------------------------------------------------------

CORE_NAMES = ["id", "source", "specversion", "type", "subject", "time", "dataschema", "datacontenttype"]
attribute_names = st.sampled_from(
    [*CORE_NAMES, "dataref", "sequence", "sequencetype", "x1", "Bad", "a-b", "data", "", "é"]
)
attribute_strings = st.sampled_from(
    ["1.0", "0.3", "", "e-1", "urn:x:y", "https://x.nl/s#f", "not a uri", "2026-11-28T12:00:00Z",
     "2026-02-30T12:00:00Z", "application/json", "text/plain; charset=utf-8", "no/", "café", "a\x00b",
     "\ufffe", "Integer", "42"]
) | st.text(max_size=6)  # fmt: skip
attribute_values: st.SearchStrategy[Any] = (
    attribute_strings
    | st.booleans()
    | st.integers(-(2**32), 2**32)
    | st.sampled_from([2**31 - 1, -(2**31), 2**31, 1.5, 2.0, None, [], {}])
)
attribute_sets = st.dictionaries(attribute_names, attribute_values, max_size=10)
REQUIRED = {"id": "e-1", "source": "urn:x:y", "specversion": "1.0", "type": "nl.x.y"}


def _full_check(attributes: dict[str, Any]) -> list[Any]:
    problems: list[Any] = []
    # A skip set naming no attribute turns the one-pass shortcut off and changes nothing else.
    codec._check_attributes(attributes, codec._plain_label, None, problems, frozenset({"\x00"}))
    return problems


@PROPERTY_SETTINGS
@given(attribute_sets, st.booleans())
def test_the_one_pass_check_passes_only_what_the_full_check_passes(
    attributes: dict[str, Any], with_required: bool
) -> None:
    if with_required:
        attributes = {**REQUIRED, **attributes}
    passed = codec._attributes_pass(attributes)
    if passed:
        assert _full_check(attributes) == []
    problems: list[Any] = []
    codec._check_attributes(attributes, codec._plain_label, None, problems)
    assert problems == _full_check(attributes)


def test_the_one_pass_check_passes_a_typical_event() -> None:
    attributes = {**REQUIRED, "time": "2026-11-28T12:00:00.000Z", "subject": "z", "sequence": "1", "n": 7}
    assert codec._attributes_pass(attributes)


ce_header_names = st.sampled_from([*("ce-" + n for n in CORE_NAMES), "ce-x1", "ce-Bad", "ce-data", "ce-"])
ce_header_values = attribute_strings | st.sampled_from(['"quoted"', '"bad', "a%20b", "a%zz", "%C3%A9", "%FF"])
content_types = st.sampled_from(
    [None, "application/json", "text/plain", "application/x+json", "bad", " application/json ", "Text/JSON",
     "application/json; charset=utf-8", "application/jsön", "text/plain\x7f", "",
     "application/" + "x" * 300 + "+json"]
)  # fmt: skip
bodies = st.sampled_from([b"", b"{}", b"null", b'{"a":[1,2]}', b"[", b"\xff", b"plain text"])


def _binary_answer(content_type: str | None, headers: list[tuple[str, str]], body: bytes) -> object:
    try:
        event = codec._parse_binary_checked(content_type, headers, body)
    except CloudEventError as error:
        return [p.as_dict() for p in error.problems]
    return _event_answer(event)


def _event_answer(event: CloudEvent) -> object:
    return (list(event.attributes.items()), event.data, event.data_null)


def _public_binary_answer(content_type: str | None, headers: list[tuple[str, str]], body: bytes) -> object:
    try:
        return _event_answer(codec._parse_binary(content_type, headers, body))
    except CloudEventError as error:
        return [p.as_dict() for p in error.problems]


def _assert_binary_paths_agree(content_type: str | None, headers: list[tuple[str, str]], body: bytes) -> None:
    """The plain path's event, when it gives one, and the public path's answer (event or problems) are the
    checked parser's."""
    expected = _binary_answer(content_type, headers, body)
    event = codec._parse_plain_binary(content_type, headers, body)
    if event is not None:
        assert _event_answer(event) == expected
    assert _public_binary_answer(content_type, headers, body) == expected


@PROPERTY_SETTINGS
@given(
    st.lists(st.tuples(ce_header_names, ce_header_values), max_size=8),
    st.booleans(),
    content_types,
    bodies,
)
def test_plain_binary_parsing_gives_the_checked_parsers_event(
    headers: list[tuple[str, str]], with_required: bool, content_type: str | None, body: bytes
) -> None:
    if with_required:
        headers = [("ce-" + k, v) for k, v in REQUIRED.items()] + headers
    _assert_binary_paths_agree(content_type, headers, body)


@pytest.mark.parametrize(
    "extra",
    [
        [("ce-subject", "a%20b")],
        [("ce-subject", '"a b"')],
        [("ce-subject", "a"), ("ce-subject", "b")],
        [("ce-datacontenttype", "application/json")],
        [("ce-subject", "a\x7fb")],
        [("ce-subject", "")],
    ],
)
def test_headers_to_decode_or_refuse_leave_the_plain_path(extra: list[tuple[str, str]]) -> None:
    headers = [("ce-" + k, v) for k, v in REQUIRED.items()] + extra
    assert codec._parse_plain_binary("application/json", headers, b"{}") is None


# --- parse_http on aiohttp's headers (a C look-up for Content-Type) and on any other mapping ---------


class PairHeaders(Mapping[str, str]):
    """Headers as sent, duplicates included, seen only through items(): parse_http's general loop."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def __getitem__(self, key: str) -> str:
        return dict(self.pairs)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self.pairs))

    def __len__(self) -> int:
        return len(dict(self.pairs))

    def items(self) -> Any:
        return list(self.pairs)


def _recased(name: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if flip else c for c, flip in zip(name, flips + [False] * len(name), strict=False)
    )


header_values = st.sampled_from(
    ["application/cloudevents+json", "application/cloudevents+json; charset=utf-8", "application/json",
     "application/cloudevents-batch+json", "application/cloudevents+xml", "text/plain", " application/json ",
     "application/cloudevents+json; charset=latin-1", "1.0", "e-1", "urn:x:y", "nl.x.y", "a%20b"]
)  # fmt: skip
header_pairs = st.lists(
    st.tuples(
        st.sampled_from(["content-type", "ce-id", "ce-source", "ce-specversion", "ce-type", "ce-x", "host"]),
        st.lists(st.booleans(), max_size=14),
        header_values,
    ).map(lambda t: (_recased(t[0], t[1]), t[2])),
    max_size=8,
)
request_bodies = st.sampled_from(
    [b"", b"{}", b"[]", b"null", orjson.dumps({**REQUIRED, "data": {"a": 1}}), orjson.dumps([REQUIRED]), b"{"]
)


def _http_answer(headers: Mapping[str, str], body: bytes) -> object:
    try:
        parsed = parse_http("POST", headers, body)
    except CloudEventError as error:
        return error.status, [p.as_dict() for p in error.problems]
    return parsed.mode, [(list(e.attributes.items()), e.data, e.data_null) for e in parsed.events]


@PROPERTY_SETTINGS
@given(header_pairs, request_bodies)
def test_parse_http_answers_alike_on_aiohttp_headers_and_on_plain_pairs(
    pairs: list[tuple[str, str]], body: bytes
) -> None:
    aiohttp_headers = CIMultiDictProxy(CIMultiDict(pairs))
    assert _http_answer(aiohttp_headers, body) == _http_answer(PairHeaders(pairs), body)


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(codec._VALUE_CHECKS)), attribute_strings | ce_header_values)
def test_each_value_predicate_agrees_with_its_check(name: str, value: str) -> None:
    assert set(codec._VALUE_PASSES) == set(codec._VALUE_CHECKS)
    if name == "source" and not value:
        return  # the one-pass check refuses an empty source before asking
    assert bool(codec._VALUE_PASSES[name](value)) == (codec._VALUE_CHECKS[name](value) is None)


def test_only_c_and_upper_c_lower_case_to_a_leading_c() -> None:
    """parse_http skips lower() for header names not starting with c or C: no other character lower-cases
    to something starting with "c" (checked over all of Unicode)."""
    leading_c = {chr(code) for code in range(0x110000) if chr(code).lower()[:1] == "c"}
    assert leading_c == codec._C_OR_UPPER_C


@pytest.mark.parametrize("deep", [False, True])
def test_a_body_too_large_to_scan_is_walked_with_the_same_verdict(deep: bool) -> None:
    data = {"pad": "[" * (20 * 1024), "nested": [[[[1]]]] if deep else 1}
    body = orjson.dumps(data)
    events = [CloudEvent({"id": "1"}, data)]
    assert depth_problems(events, 3, batch=False, body=body) == depth_problems(events, 3, batch=False)
    assert bool(depth_problems(events, 3, batch=False, body=body)) == deep


def test_the_scan_stops_after_limit_plus_one_openings() -> None:
    assert json_text_within_depth(b"[" * 5 + b"{" * 5, 10)
    assert not json_text_within_depth(b"[" * 5 + b"{" * 6, 10)
    assert not json_text_within_depth(b"[" * 100_000, 10)


string_attribute_sets = st.dictionaries(attribute_names, attribute_strings, max_size=10)


@PROPERTY_SETTINGS
@given(string_attribute_sets, st.booleans())
def test_the_string_check_passes_exactly_what_the_one_pass_check_passes(
    attributes: dict[str, str], with_required: bool
) -> None:
    # Binary mode's headers: every value a string; the caller has checked them printable ASCII, and the
    # datacontenttype a media type. On such attributes both checks must say the same.
    if with_required:
        attributes = {**REQUIRED, **attributes}
    _assert_string_checks_agree(attributes)


def _assert_string_checks_agree(attributes: dict[str, str]) -> None:
    """On what binary mode's caller lets through (every value printable ASCII, the datacontenttype a media
    type), the string check says what the one-pass check says."""
    values = "".join(attributes.values())
    content_type = attributes.get("datacontenttype")
    if not (values.isascii() and values.isprintable()):
        return
    if content_type is not None and not codec._media_type(content_type):
        return
    assert codec._printable_strings_pass(attributes) == codec._attributes_pass(attributes)


TYPICAL = {
    **REQUIRED,
    "time": "2026-11-28T12:00:00.000Z",
    "subject": "zaak-17",
    "datacontenttype": "application/json",
    "dataschema": "https://x.nl/s",
    "sequence": "1",
    "sequencetype": "Integer",
}


@PROPERTY_SETTINGS
@given(attribute_names, attribute_strings, st.booleans())
def test_one_changed_attribute_of_a_typical_event_gets_the_same_verdict_from_both_checks(
    name: str, value: str, drop: bool
) -> None:
    # Random sets are rarely valid but for one value; this starts from a valid event and changes one.
    attributes = dict(TYPICAL)
    if drop:
        attributes.pop(name, None)
    else:
        attributes[name] = value
    _assert_string_checks_agree(attributes)


@pytest.mark.parametrize(
    ("name", "value"),
    [("subject", 'a "quoted" word'), ("x1", 'say "hi"'), ("subject", "tab\there"), ("subject", "é")],
)
def test_a_quote_anywhere_or_a_character_to_check_leaves_the_plain_path_with_the_same_answer(
    name: str, value: str
) -> None:
    headers = [("ce-" + k, v) for k, v in REQUIRED.items()] + [("ce-" + name, value)]
    assert codec._parse_plain_binary("application/json", headers, b"{}") is None
    assert _binary_answer("application/json", headers, b"{}") == _public_binary_answer(
        "application/json", headers, b"{}"
    )


@PROPERTY_SETTINGS
@given(ce_header_names, ce_header_values, content_types, bodies)
def test_one_changed_header_of_a_typical_binary_event_parses_as_the_checked_parser_parses(
    name: str, value: str, content_type: str | None, body: bytes
) -> None:
    headers = {"ce-" + k: v for k, v in TYPICAL.items() if k != "datacontenttype"}
    headers[name] = value
    _assert_binary_paths_agree(content_type, list(headers.items()), body)


CONTENT_TYPE_VALUES = [
    "application/json", " application/json ", "Application/JSON; charset=utf-8", "text/json", "text/plain",
    "application/x+json", "application/cloudevents+json", "bad", "", "  ", "application/jsön",
    "text/plain\x7f", 'application/json; charset="utf-8"', "application/" + "x" * 300 + "+json",
    "application/cloudevents+json; charset=latin-1", "application/cloudevents+json; charset=UTF-8",
    'application/cloudevents-batch+json; charset="utf-8"', "application/cloudevents+json; charset",
]  # fmt: skip


@pytest.mark.parametrize("raw", CONTENT_TYPE_VALUES)
def test_the_cached_content_type_facts_are_the_uncached_answers(raw: str) -> None:
    stripped = raw.strip()
    expected = (
        stripped,
        stripped.split(";", 1)[0].strip().lower(),
        stripped.isascii() and stripped.isprintable() and codec.parse_media_type(stripped) is not None,
        codec.is_json_content_type(stripped),
        codec._media_parameters(stripped).get("charset", "utf-8").lower() == "utf-8",
    )
    assert codec._content_type_facts(raw) == expected
    assert expected[3] == codec.is_json_content_type(raw)  # (the JSON check strips: the same for raw)
    assert (codec._CONTENT_TYPES.get(raw) or codec._content_type_facts(raw)) == expected  # cached or not


def test_the_content_type_cache_holds_short_values_only_and_stays_bounded() -> None:
    for n in range(codec._CACHED_CONTENT_TYPES + 10):
        codec._content_type_facts(f"application/x{n}+json")
        assert len(codec._CONTENT_TYPES) <= codec._CACHED_CONTENT_TYPES
    long = "application/" + "x" * 300 + "+json"
    codec._content_type_facts(long)
    assert long not in codec._CONTENT_TYPES


def _json_answer(document: dict[str, Any]) -> object:
    problems: list[Any] = []
    event = codec._checked_event_from_json(dict(document), None, problems)
    return [p.as_dict() for p in problems] if problems or event is None else _event_answer(event)


@PROPERTY_SETTINGS
@given(
    attribute_names,
    attribute_values | st.sampled_from([" application/json ", "Application/JSON", "text/plain\x7f", None]),
    st.booleans(),
    st.sampled_from([{"a": 1}, "text", None, [1]]),
)
def test_one_changed_member_of_a_typical_structured_event_parses_as_the_checked_parser_parses(
    name: str, value: Any, drop: bool, data: Any
) -> None:
    """The structured plain path (all-string attributes checked together, else value by value) gives
    exactly the checked parser's event, or leaves the decision to it."""
    document: dict[str, Any] = {**TYPICAL, "data": data}
    if drop:
        document.pop(name, None)
    else:
        document[name] = value
    event = codec._plain_event_from_json(dict(document))
    if event is not None:
        assert _event_answer(event) == _json_answer(document)


@pytest.mark.parametrize("content_type", CONTENT_TYPE_VALUES)
@pytest.mark.parametrize("data", [{"a": 1}, "text"])
def test_a_structured_events_datacontenttype_is_taken_as_the_checked_parser_takes_it(
    content_type: str, data: Any
) -> None:
    document: dict[str, Any] = {**TYPICAL, "datacontenttype": content_type, "data": data}
    event = codec._plain_event_from_json(dict(document))
    if event is not None:
        assert _event_answer(event) == _json_answer(document)
    if content_type == "application/json":
        assert event is not None  # the common case takes the plain path
