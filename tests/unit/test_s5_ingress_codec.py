"""Session 5 /events fast paths in the codec give exactly the general path's answer (properties)."""

from __future__ import annotations

import calendar
import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from openconnector.ce import CloudEvent, codec

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None)
REQUIRED = {"id": "e-1", "source": "urn:x:y", "specversion": "1.0", "type": "nl.x.y"}


# --- binary mode: ce- headers read straight from aiohttp's headers ---------------------------------


def _recased(name: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if flip else c for c, flip in zip(name, flips + [False] * len(name), strict=False)
    )


header_names = st.tuples(
    st.sampled_from(
        ["ce-id", "ce-source", "ce-specversion", "ce-type", "ce-subject", "ce-time", "ce-x1", "ce-Bad",
         "ce-datacontenttype", "ce-data", "ce-", "host", "content-length", "cex", "c", ""]
    ),
    st.lists(st.booleans(), max_size=20),
).map(lambda t: _recased(*t))  # fmt: skip
header_values = st.sampled_from(
    ["1.0", "0.3", "", "e-1", "urn:x:y", "nl.x.y", "2026-11-28T12:00:00Z", "2026-02-30T12:00:00Z", "café",
     "a\x7fb", '"quoted"', '"bad', "a%20b", "a%zz", "%FF", "application/json"]
)  # fmt: skip
content_types = st.sampled_from([None, "application/json", "text/plain", "application/x+json", "bad"])
bodies = st.sampled_from([b"", b"{}", b"null", b'{"a":[1,2]}', b"[", b"\xff", b"plain text"])


def _event_tuple(event: CloudEvent | None) -> object:
    return None if event is None else (list(event.attributes.items()), event.data, event.data_null)


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(header_names, header_values), max_size=10), st.booleans(), content_types, bodies)
def test_binary_headers_read_in_one_pass_give_the_listed_headers_event(
    pairs: list[tuple[str, str]], with_required: bool, content_type: str | None, body: bytes
) -> None:
    if with_required:
        pairs = [("ce-" + k, v) for k, v in REQUIRED.items()] + pairs
    headers = CIMultiDictProxy(CIMultiDict(pairs))
    listed = [(key.lower(), value) for key, value in headers.items() if key.lower()[:3] == "ce-"]
    fast = codec._plain_binary_of_headers(content_type, headers, body)
    general = codec._parse_plain_binary(content_type, listed, body)
    assert _event_tuple(fast) == _event_tuple(general)


def test_the_header_name_cache_stays_bounded_and_keeps_its_answers() -> None:
    codec._CE_ATTRIBUTE_OF.clear()
    for number in range(3 * codec._CACHED_NAMES):
        name = f"Ce-X{number}"
        assert codec._ce_attribute_of(name) == name.lower()[3:]
        assert len(codec._CE_ATTRIBUTE_OF) <= codec._CACHED_NAMES
    long_name = "ce-" + "a" * (codec._CACHED_NAME_LENGTH + 1)
    assert codec._ce_attribute_of(long_name) == long_name[3:]
    assert long_name not in codec._CE_ATTRIBUTE_OF  # long names are not kept
    assert codec._ce_attribute_of("Host") is None
    assert codec._ce_attribute_of("CE-") == ""  # a ce- header with an empty name is still a ce- header


# --- the fast CloudEvent constructor ---------------------------------------------------------------


@given(
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=4),
    st.none() | st.binary(),
    st.booleans(),
)
def test_the_fast_constructor_builds_the_dataclasss_event(
    attributes: dict[str, Any], data: bytes | None, data_null: bool
) -> None:
    built = codec._cloud_event(attributes, data, data_null)
    expected = CloudEvent(attributes, data, data_null)
    assert built == expected
    assert repr(built) == repr(expected)
    assert type(built) is CloudEvent
    assert built.attributes is attributes


# --- structured mode: attributes copied at once ----------------------------------------------------

member_names = st.sampled_from(
    ["id", "source", "specversion", "type", "subject", "time", "datacontenttype", "dataschema", "data",
     "data_base64", "x1", "Bad", "sequence"]
)  # fmt: skip
member_values: st.SearchStrategy[Any] = st.sampled_from(
    ["1.0", "", "e-1", "urn:x:y", "nl.x.y", "2026-11-28T12:00:00Z", "application/json", "text/plain",
     "aGk=", "!!", "café", None, 5, 5.0, 1.5, True, 2**40, [], {"a": 1}, [1, 2]]
)  # fmt: skip
documents = st.dictionaries(member_names, member_values, max_size=9)


def _from_json_answer(function: Any, document: object) -> object:
    problems: list[Any] = []
    event = function(document, 3, problems)
    return _event_tuple(event), [p.as_dict() for p in problems]


@PROPERTY_SETTINGS
@given(documents, st.booleans(), st.booleans())
def test_a_json_event_copied_at_once_is_the_one_built_member_by_member(
    document: dict[str, Any], with_required: bool, reordered: bool
) -> None:
    if with_required:
        document = {**REQUIRED, **document} if reordered else {**document, **REQUIRED}
    fast = codec._plain_event_from_json(dict(document))
    if fast is not None:
        checked = _from_json_answer(codec._checked_event_from_json, document)
        assert isinstance(checked, tuple)
        assert _event_tuple(fast) == checked[0]
    assert _from_json_answer(codec._event_from_json, document) == _from_json_answer(
        codec._checked_event_from_json, document
    )


@PROPERTY_SETTINGS
@given(st.lists(documents, max_size=3))
def test_structured_and_batch_bodies_parse_as_before(items: list[dict[str, Any]]) -> None:
    for item in items:
        body = orjson.dumps({**REQUIRED, **item})
        try:
            event: object = _event_tuple(codec.parse_structured(body))
        except codec.CloudEventError as error:
            event = [p.as_dict() for p in error.problems]
        problems: list[Any] = []
        checked = codec._checked_event_from_json(orjson.loads(body), None, problems)
        assert event == (_event_tuple(checked) if not problems else [p.as_dict() for p in problems])


def test_a_typical_structured_event_takes_the_copy() -> None:
    document: dict[str, object] = {**REQUIRED, "time": "2026-11-28T12:00:00Z", "data": {"a": 1}}
    event = codec._plain_event_from_json(document)
    assert event is not None
    assert list(event.attributes) == ["id", "source", "specversion", "type", "time", "datacontenttype"]
    assert event.data == {"a": 1}


# --- RFC 3339: the day compared as text ------------------------------------------------------------

_REFERENCE_RE = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


def _reference_rfc3339(value: str) -> bool:
    match = _REFERENCE_RE.fullmatch(value)
    if match is None:
        return False
    day, year, month = int(match.group(3)), int(match.group(1)), int(match.group(2))
    if day <= 28:
        return True
    if month == 2 and calendar.isleap(year):
        return day <= 29
    return day <= (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month]


@PROPERTY_SETTINGS
@given(
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T12:00:00Z", "t23:59:60.5+01:00", "T24:00:00Z", "T12:00:00", "T12:00:00.Z"]),
)
def test_the_rfc3339_check_agrees_with_the_calendar(year: int, month: int, day: int, rest: str) -> None:
    value = f"{year:04d}-{month:02d}-{day:02d}{rest}"
    assert codec.is_rfc3339(value) == _reference_rfc3339(value)


@given(
    st.sampled_from(list(codec.ContentMode)),
    st.lists(st.dictionaries(st.text(max_size=3), st.text(max_size=3)), max_size=3),
)
def test_parse_results_are_built_as_the_dataclass_builds_them(
    mode: codec.ContentMode, attribute_sets: list[dict[str, Any]]
) -> None:
    events = tuple(CloudEvent(a) for a in attribute_sets)
    built = codec._parse_result(mode, events)
    assert built == codec.ParseResult(mode, events)
    assert repr(built) == repr(codec.ParseResult(mode, events))
    assert type(built) is codec.ParseResult
