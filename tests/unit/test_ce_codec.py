"""CloudEvents 1.0.2 core, HTTP binding and JSON format rules, one table row per rule."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from openconnector.ce import (
    CloudEvent,
    CloudEventError,
    ContentMode,
    decode_header_value,
    encode_header_value,
    is_absolute_uri,
    is_uri_reference,
    parse_http,
    to_batch,
    to_binary,
    to_structured,
    validate_event,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

BINARY_BASE = {
    "ce-specversion": "1.0",
    "ce-id": "A234-1234-1234",
    "ce-source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
    "ce-type": "nl.vng.zgw.zaken.zaak.created",
}

STRUCTURED_BASE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "A234-1234-1234",
    "source": "https://openconnector.example.nl",
    "type": "nl.vng.zgw.zaken.zaak.created",
}


def binary(drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """Binary-mode headers: the valid base, minus `drop`, plus `extra`.

    Keyword names without a dash have their underscores turned into dashes (ce_id -> ce-id).
    """
    headers = {k: v for k, v in BINARY_BASE.items() if k not in drop}
    headers.update({k if "-" in k else k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def structured(drop: tuple[str, ...] = (), **extra: Any) -> bytes:
    document = {k: v for k, v in STRUCTURED_BASE.items() if k not in drop}
    document.update(extra)
    return orjson.dumps(document)


def parse_one(headers: Any, body: bytes = b"") -> CloudEvent:
    result = parse_http("POST", headers, body)
    assert len(result.events) == 1
    return result.events[0]


def problems_of(headers: Any, body: bytes = b"", method: str = "POST") -> CloudEventError:
    with pytest.raises(CloudEventError) as caught:
        parse_http(method, headers, body)
    return caught.value


# --- accepted binary-mode requests: (case, headers, body, attribute or "data", expected value) ------

BINARY_ACCEPTED: list[tuple[str, dict[str, str], bytes, str, object]] = [
    ("minimal event", binary(), b"", "id", "A234-1234-1234"),
    ("percent-encoded space", binary(ce_subject="a%20b"), b"", "subject", "a b"),
    ("lower-case hex accepted", binary(ce_subject="caf%c3%a9"), b"", "subject", "café"),
    ("upper-case hex", binary(ce_subject="caf%C3%A9"), b"", "subject", "café"),
    ("one decoding round only", binary(ce_subject="%2541"), b"", "subject", "%41"),
    ("needlessly encoded ASCII accepted", binary(ce_subject="%41%42"), b"", "subject", "AB"),
    ("quoted-string unescaped", binary(ce_subject='"hello world"'), b"", "subject", "hello world"),
    ("quoted-pair unescaped", binary(ce_subject='"a\\"b"'), b"", "subject", 'a"b'),
    ("quoted-string before percent", binary(ce_subject='"a%20b"'), b"", "subject", "a b"),
    ("4-byte UTF-8", binary(ce_subject="%F0%9F%98%80"), b"", "subject", "😀"),
    (
        "header names case-insensitive",
        {k.upper(): v for k, v in BINARY_BASE.items()},
        b"",
        "type",
        "nl.vng.zgw.zaken.zaak.created",
    ),
    (
        "Content-Type is datacontenttype",
        binary(Content_Type="application/json; charset=utf-8"),
        b"{}",
        "datacontenttype",
        "application/json; charset=utf-8",
    ),
    ("no Content-Type: no datacontenttype", binary(), b"", "datacontenttype", None),
    ("JSON body decoded", binary(Content_Type="application/json"), b'{"a": [1, 2]}', "data", {"a": [1, 2]}),
    ("+json suffix is JSON", binary(Content_Type="application/vnd.api+json"), b'{"a": 1}', "data", {"a": 1}),
    ("JSON string body is a string", binary(Content_Type="application/json"), b'"x"', "data", "x"),
    ("non-JSON body stays bytes", binary(Content_Type="text/plain"), b"hello", "data", b"hello"),
    ("body without Content-Type is bytes", binary(), b"\x00\x01", "data", b"\x00\x01"),
    ("empty body is no data", binary(Content_Type="application/json"), b"", "data", None),
    ("extension values are strings", binary(ce_comexampleothervalue="5"), b"", "comexampleothervalue", "5"),
    (
        "extension over 20 chars accepted by core",
        binary(ce_abcdefghijklmnopqrstu="x"),
        b"",
        "abcdefghijklmnopqrstu",
        "x",
    ),
    ("empty extension value allowed", binary(ce_traceparent=""), b"", "traceparent", ""),
    (
        "time with offset and fraction",
        binary(ce_time="2024-06-15T10:30:00.123456%2B02:00"),
        b"",
        "time",
        "2024-06-15T10:30:00.123456+02:00",
    ),
    ("time lower-case t and z", binary(ce_time="2024-06-15t10:30:00z"), b"", "time", "2024-06-15t10:30:00z"),
    ("time leap day", binary(ce_time="2024-02-29T00:00:00Z"), b"", "time", "2024-02-29T00:00:00Z"),
    ("time leap second", binary(ce_time="2016-12-31T23:59:60Z"), b"", "time", "2016-12-31T23:59:60Z"),
    (
        "source relative reference",
        binary(ce_source="/sensors/tn-1234567/alerts"),
        b"",
        "source",
        "/sensors/tn-1234567/alerts",
    ),
    ("source opaque string", binary(ce_source="1-555-123-4567"), b"", "source", "1-555-123-4567"),
    (
        "source mailto URI",
        binary(ce_source="mailto:cncf-wg-serverless@lists.cncf.io"),
        b"",
        "source",
        "mailto:cncf-wg-serverless@lists.cncf.io",
    ),
    (
        "source percent-encoded URN",
        binary(ce_source="urn:nld:gemeente-Bergen%2520%2528L%2529.bzs"),
        b"",
        "source",
        "urn:nld:gemeente-Bergen%20%28L%29.bzs",
    ),
    (
        "source IPv6 authority",
        binary(ce_source="http://[2001:db8::1]:8080/x"),
        b"",
        "source",
        "http://[2001:db8::1]:8080/x",
    ),
    (
        "dataschema absolute URI",
        binary(ce_dataschema="https://schemas.example.nl/zaak/v1.json"),
        b"",
        "dataschema",
        "https://schemas.example.nl/zaak/v1.json",
    ),
    ("dataref relative reference", binary(ce_dataref="/api/persoon/123"), b"", "dataref", "/api/persoon/123"),
]


@pytest.mark.parametrize(
    ("headers", "body", "attribute", "expected"),
    [c[1:] for c in BINARY_ACCEPTED],
    ids=[c[0] for c in BINARY_ACCEPTED],
)
def test_binary_accepted(headers: dict[str, str], body: bytes, attribute: str, expected: object) -> None:
    result = parse_http("POST", headers, body)
    assert result.mode is ContentMode.BINARY
    (event,) = result.events
    actual = event.data if attribute == "data" else event.get(attribute)
    assert actual == expected
    assert type(actual) is type(expected)


# --- refused binary-mode requests: (case, headers, body, attribute, status) -----------------------

BINARY_REFUSED: list[tuple[str, dict[str, str], bytes, str | None, int]] = [
    ("id missing", binary(drop=("ce-id",)), b"", "ce-id", 400),
    ("source missing", binary(drop=("ce-source",)), b"", "ce-source", 400),
    ("type missing", binary(drop=("ce-type",)), b"", "ce-type", 400),
    ("specversion missing", binary(drop=("ce-specversion",)), b"", "ce-specversion", 400),
    ("specversion 0.3", binary(ce_specversion="0.3"), b"", "ce-specversion", 400),
    ("specversion 1.0.2", binary(ce_specversion="1.0.2"), b"", "ce-specversion", 400),
    ("empty id", binary(ce_id=""), b"", "ce-id", 400),
    ("empty type", binary(ce_type=""), b"", "ce-type", 400),
    ("empty source", binary(ce_source=""), b"", "ce-source", 400),
    ("empty subject", binary(ce_subject=""), b"", "ce-subject", 400),
    (
        "ce-datacontenttype refused",
        binary(ce_datacontenttype="application/json"),
        b"",
        "ce-datacontenttype",
        400,
    ),
    ("overlong UTF-8 %C0%A0", binary(ce_subject="%C0%A0"), b"", "ce-subject", 400),
    ("encoded surrogate", binary(ce_subject="%ED%A0%80"), b"", "ce-subject", 400),
    ("truncated UTF-8", binary(ce_subject="%C3"), b"", "ce-subject", 400),
    ("bad percent escape", binary(ce_subject="%G1"), b"", "ce-subject", 400),
    ("trailing percent", binary(ce_subject="50%"), b"", "ce-subject", 400),
    ("decoded newline is a control char", binary(ce_subject="a%0Ab"), b"", "ce-subject", 400),
    ("decoded C1 control", binary(ce_subject="%C2%85"), b"", "ce-subject", 400),
    ("decoded noncharacter U+FFFE", binary(ce_subject="%EF%BF%BE"), b"", "ce-subject", 400),
    ("unterminated quoted-string", binary(ce_subject='"abc'), b"", "ce-subject", 400),
    ("extension name with underscore", {**binary(), "ce-com_example": "x"}, b"", "ce-com_example", 400),
    ("extension name with dash", {**binary(), "ce-nl-brp-geslacht": "V"}, b"", "ce-nl-brp-geslacht", 400),
    ("extension named data", binary(ce_data="x"), b"", "ce-data", 400),
    ("time not RFC 3339", binary(ce_time="yesterday"), b"", "ce-time", 400),
    ("time without offset", binary(ce_time="2024-06-15T10:30:00"), b"", "ce-time", 400),
    ("time with a space separator", binary(ce_time="2024-06-15%2010:30:00Z"), b"", "ce-time", 400),
    ("time 30 February", binary(ce_time="2024-02-30T00:00:00Z"), b"", "ce-time", 400),
    ("time 29 February 2023", binary(ce_time="2023-02-29T00:00:00Z"), b"", "ce-time", 400),
    ("time hour 24", binary(ce_time="2024-06-15T24:00:00Z"), b"", "ce-time", 400),
    ("source with a space", binary(ce_source="a%20b"), b"", "ce-source", 400),
    ("source with raw unicode", binary(ce_source="urn:nld:caf%C3%A9"), b"", "ce-source", 400),
    ("source with colon in first relative segment", binary(ce_source=":abc"), b"", "ce-source", 400),
    ("source with bad IPv6", binary(ce_source="http://[zz::1]/"), b"", "ce-source", 400),
    ("dataschema relative", binary(ce_dataschema="/schemas/zaak.json"), b"", "ce-dataschema", 400),
    (
        "dataschema with fragment",
        binary(ce_dataschema="https://x.nl/s.json#/defs/a"),
        b"",
        "ce-dataschema",
        400,
    ),
    ("dataref not a URI-reference", binary(ce_dataref="http://exa%20mple/"), b"", "ce-dataref", 400),
    ("invalid JSON body", binary(Content_Type="application/json"), b"{nope", "data", 400),
    ("content-type not a media type", binary(Content_Type="json"), b"{}", "content-type", 400),
    ("not a CloudEvent at all", {"Content-Type": "application/json"}, b"{}", "ce-specversion", 400),
]


@pytest.mark.parametrize(
    ("headers", "body", "attribute", "status"),
    [c[1:] for c in BINARY_REFUSED],
    ids=[c[0] for c in BINARY_REFUSED],
)
def test_binary_refused(headers: dict[str, str], body: bytes, attribute: str | None, status: int) -> None:
    error = problems_of(headers, body)
    assert error.status == status
    assert attribute in {p.attribute for p in error.problems}
    assert all(p.detail.startswith((f"{p.attribute}:", "extension name")) for p in error.problems)


def test_binary_extension_name_message_is_exact() -> None:
    error = problems_of({**binary(), "ce-com_example": "x"})
    assert [p.detail for p in error.problems] == ['extension name "com_example": only [a-z0-9] allowed']


def test_binary_missing_id_message_is_exact() -> None:
    error = problems_of(binary(drop=("ce-id",)))
    assert [(p.attribute, p.detail, p.index) for p in error.problems] == [
        ("ce-id", "ce-id: required attribute missing", None)
    ]


def test_binary_every_problem_is_listed() -> None:
    headers = {
        "ce-specversion": "0.3",
        "ce-id": "",
        "ce-com_example": "x",
        "ce-time": "yesterday",
        "ce-subject": "%C0%A0",
        "ce-datacontenttype": "text/plain",
    }
    error = problems_of(headers)
    assert sorted(p.attribute or "" for p in error.problems) == sorted(
        [
            "ce-specversion",
            "ce-id",
            "ce-com_example",
            "ce-time",
            "ce-subject",
            "ce-datacontenttype",
            "ce-source",
            "ce-type",
        ]
    )


def test_binary_undecodable_required_header_is_reported_once() -> None:
    error = problems_of(binary(ce_id="%C0%A0"))
    assert [p.detail for p in error.problems] == ["ce-id: percent-encoded bytes are not valid UTF-8"]


def test_binary_duplicate_header_refused() -> None:
    headers = CIMultiDict(BINARY_BASE)
    headers.add("CE-ID", "other")
    error = problems_of(headers)
    assert [(p.attribute, p.status) for p in error.problems] == [("ce-id", 400)]


def test_binary_accepts_multidict_headers() -> None:
    event = parse_one(CIMultiDict(binary(Content_Type="application/json")), b"[1]")
    assert event.id == "A234-1234-1234"
    assert event.data == [1]


def test_binary_json_string_body_is_not_parsed_twice() -> None:
    event = parse_one(binary(Content_Type="application/json"), b'"{\\"a\\": 1}"')
    assert event.data == '{"a": 1}'


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_non_post_method_is_405(method: str) -> None:
    error = problems_of(binary(), method=method)
    assert error.status == 405
    assert [p.attribute for p in error.problems] == ["method"]


def test_lower_case_post_accepted() -> None:
    assert parse_http("post", binary(), b"").events[0].id == "A234-1234-1234"


# --- structured mode --------------------------------------------------------------------------------

STRUCTURED_ACCEPTED: list[tuple[str, str, bytes, str, object]] = [
    ("minimal event", STRUCTURED, structured(), "id", "A234-1234-1234"),
    ("charset parameter", STRUCTURED + "; charset=UTF-8", structured(), "id", "A234-1234-1234"),
    ("media type case-insensitive", "Application/CloudEvents+JSON", structured(), "id", "A234-1234-1234"),
    (
        "missing datacontenttype with data is application/json",
        STRUCTURED,
        structured(data={"a": 1}),
        "datacontenttype",
        "application/json",
    ),
    ("missing datacontenttype without data stays unset", STRUCTURED, structured(), "datacontenttype", None),
    ("JSON data kept", STRUCTURED, structured(data={"a": [1, None]}), "data", {"a": [1, None]}),
    (
        "JSON string data never parsed twice",
        STRUCTURED,
        structured(datacontenttype="application/json", data='{"a": 1}'),
        "data",
        '{"a": 1}',
    ),
    (
        "data_base64 decoded to bytes",
        STRUCTURED,
        structured(data_base64=base64.b64encode(b"\x00hi").decode()),
        "data",
        b"\x00hi",
    ),
    (
        "data_base64 keeps datacontenttype unset",
        STRUCTURED,
        structured(data_base64="aGk="),
        "datacontenttype",
        None,
    ),
    ("null attribute is unset", STRUCTURED, structured(subject=None), "subject", None),
    ("null data is no data", STRUCTURED, structured(data=None), "data", None),
    ("null data adds no datacontenttype", STRUCTURED, structured(data=None), "datacontenttype", None),
    ("null data with data_base64", STRUCTURED, structured(data=None, data_base64="aGk="), "data", b"hi"),
    ("integer extension", STRUCTURED, structured(comexampleothervalue=5), "comexampleothervalue", 5),
    ("integer extension at int32 min", STRUCTURED, structured(big=-(2**31)), "big", -(2**31)),
    ("whole JSON number is an integer", STRUCTURED, structured(count=5.0), "count", 5),
    ("boolean extension", STRUCTURED, structured(flag=True), "flag", True),
    (
        "text/xml with string data",
        STRUCTURED,
        structured(datacontenttype="text/xml", data='<a x="1"/>'),
        "data",
        '<a x="1"/>',
    ),
    (
        "unicode attribute",
        STRUCTURED,
        structured(subject="Zaak \u00e9\u4e2d\U0001f600"),
        "subject",
        "Zaak \u00e9\u4e2d\U0001f600",
    ),
]


@pytest.mark.parametrize(
    ("content_type", "body", "attribute", "expected"),
    [c[1:] for c in STRUCTURED_ACCEPTED],
    ids=[c[0] for c in STRUCTURED_ACCEPTED],
)
def test_structured_accepted(content_type: str, body: bytes, attribute: str, expected: object) -> None:
    result = parse_http("POST", {"Content-Type": content_type}, body)
    assert result.mode is ContentMode.STRUCTURED
    (event,) = result.events
    actual = event.data if attribute == "data" else event.get(attribute)
    assert actual == expected
    assert type(actual) is type(expected)


STRUCTURED_REFUSED: list[tuple[str, str, bytes, str | None, int]] = [
    ("non-JSON event format", "application/cloudevents+xml", b"<e/>", "content-type", 415),
    ("format without suffix", "application/cloudevents", structured(), "content-type", 415),
    ("non-UTF-8 charset", STRUCTURED + "; charset=iso-8859-1", structured(), "content-type", 415),
    ("empty body", STRUCTURED, b"", None, 400),
    ("body not JSON", STRUCTURED, b"{nope", None, 400),
    ("body a JSON array", STRUCTURED, b"[]", None, 400),
    ("id missing", STRUCTURED, structured(drop=("id",)), "id", 400),
    ("id null is missing", STRUCTURED, structured(id=None), "id", 400),
    ("id a number", STRUCTURED, structured(id=5), "id", 400),
    ("specversion a number", STRUCTURED, structured(specversion=1.0), "specversion", 400),
    ("specversion 0.3", STRUCTURED, structured(specversion="0.3"), "specversion", 400),
    ("type an object", STRUCTURED, structured(type={"a": 1}), "type", 400),
    ("time a number", STRUCTURED, structured(time=1718447400), "time", 400),
    ("data and data_base64 together", STRUCTURED, structured(data={}, data_base64="aGk="), "data", 400),
    ("data_base64 not base64", STRUCTURED, structured(data_base64="not base64!"), "data_base64", 400),
    ("data_base64 not a string", STRUCTURED, structured(data_base64=[1]), "data_base64", 400),
    (
        "object data with non-JSON datacontenttype",
        STRUCTURED,
        structured(datacontenttype="text/xml", data={"a": 1}),
        "data",
        400,
    ),
    (
        "datacontenttype not a media type",
        STRUCTURED,
        structured(datacontenttype="json"),
        "datacontenttype",
        400,
    ),
    ("integer extension above int32", STRUCTURED, structured(big=2**31), "big", 400),
    ("integer extension below int32", STRUCTURED, structured(big=-(2**31) - 1), "big", 400),
    ("fractional extension", STRUCTURED, structured(ratio=1.5), "ratio", 400),
    ("object extension", STRUCTURED, structured(obj={"a": 1}), "obj", 400),
    ("array extension", STRUCTURED, structured(arr=[1]), "arr", 400),
    ("upper-case extension name", STRUCTURED, structured(comExample="x"), "comExample", 400),
    ("extension name with underscore", STRUCTURED, structured(com_example="x"), "com_example", 400),
    ("control character in id", STRUCTURED, structured(id="a\nb"), "id", 400),
    ("lone surrogate-free noncharacter", STRUCTURED, structured(subject="\ufdd0"), "subject", 400),
]


@pytest.mark.parametrize(
    ("content_type", "body", "attribute", "status"),
    [c[1:] for c in STRUCTURED_REFUSED],
    ids=[c[0] for c in STRUCTURED_REFUSED],
)
def test_structured_refused(content_type: str, body: bytes, attribute: str | None, status: int) -> None:
    error = problems_of({"Content-Type": content_type}, body)
    assert error.status == status
    assert attribute in {p.attribute for p in error.problems}


def test_structured_ignores_ce_headers() -> None:
    event = parse_one(
        {"Content-Type": STRUCTURED, "ce-id": "from-header", "ce-datacontenttype": "x"}, structured()
    )
    assert event.id == "A234-1234-1234"


def test_structured_every_problem_is_listed() -> None:
    body = structured(
        drop=("type",), id="", specversion="0.3", time="noon", com_example=1, data={}, data_base64="aGk="
    )
    error = problems_of({"Content-Type": STRUCTURED}, body)
    assert sorted(p.attribute or "" for p in error.problems) == sorted(
        ["type", "id", "specversion", "time", "com_example", "data"]
    )
    assert all(p.index is None and p.status == 400 for p in error.problems)


# --- batch mode ------------------------------------------------------------------------------------


def batch_body(*events: dict[str, Any]) -> bytes:
    return orjson.dumps(list(events))


def test_batch_empty_is_allowed() -> None:
    result = parse_http("POST", {"Content-Type": BATCH}, b"[]")
    assert result.mode is ContentMode.BATCH
    assert result.events == ()


def test_batch_events_in_order() -> None:
    result = parse_http(
        "POST",
        {"Content-Type": BATCH + "; charset=utf-8"},
        batch_body({**STRUCTURED_BASE, "id": "1"}, {**STRUCTURED_BASE, "id": "2", "data": [1]}),
    )
    assert [e.id for e in result.events] == ["1", "2"]
    assert result.events[1].data == [1]


BATCH_REFUSED: list[tuple[str, str, bytes, list[tuple[int | None, str | None]], int]] = [
    ("not an array", BATCH, orjson.dumps(STRUCTURED_BASE), [(None, None)], 400),
    ("element not an object", BATCH, batch_body(STRUCTURED_BASE).replace(b"]", b",1]"), [(1, None)], 400),
    (
        "second event lacks an id",
        BATCH,
        batch_body(STRUCTURED_BASE, {**STRUCTURED_BASE, "id": None}),
        [(1, "id")],
        400,
    ),
    (
        "mixed specversions",
        BATCH,
        batch_body(STRUCTURED_BASE, {**STRUCTURED_BASE, "specversion": "0.3"}),
        [(1, "specversion"), (None, "specversion")],
        400,
    ),
    ("non-JSON batch format", "application/cloudevents-batch+xml", b"<b/>", [(None, "content-type")], 415),
]


@pytest.mark.parametrize(
    ("content_type", "body", "expected", "status"),
    [c[1:] for c in BATCH_REFUSED],
    ids=[c[0] for c in BATCH_REFUSED],
)
def test_batch_refused(
    content_type: str, body: bytes, expected: list[tuple[int | None, str | None]], status: int
) -> None:
    error = problems_of({"Content-Type": content_type}, body)
    assert error.status == status
    assert [(p.index, p.attribute) for p in error.problems] == expected


def test_batch_problem_string_names_the_index() -> None:
    error = problems_of({"Content-Type": BATCH}, batch_body(STRUCTURED_BASE, {**STRUCTURED_BASE, "id": ""}))
    assert str(error) == "event[1]: id: must be a non-empty string"


# --- header value encoding --------------------------------------------------------------------------

ENCODED: list[tuple[str | int | bool, str]] = [
    ("plain", "plain"),
    ("a b", "a%20b"),
    ('say "hi"', "say%20%22hi%22"),
    ("100%", "100%25"),
    ("café", "caf%C3%A9"),
    ("€", "%E2%82%AC"),
    ("\U0001f600", "%F0%9F%98%80"),
    ("\u007f", "%7F"),
    ("!#$&'()*+,/:;<=>?@[\\]^_`{|}~", "!#$&'()*+,/:;<=>?@[\\]^_`{|}~"),
    (True, "true"),
    (False, "false"),
    (-42, "-42"),
]


@pytest.mark.parametrize(("value", "encoded"), ENCODED)
def test_encode_header_value(value: str | int | bool, encoded: str) -> None:
    assert encode_header_value(value) == encoded
    if isinstance(value, str):
        assert decode_header_value(encoded) == value


@pytest.mark.parametrize("raw", ["%C0%A0", "%FF", "%E2%82", "%", "%4", '"open', '"a"b"'])
def test_decode_header_value_refuses(raw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_header_value(raw)


# --- URI grammars -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reference", "absolute"),
    [
        ("https://example.com/a?b=c#d", True, False),
        ("https://example.com/a?b=c", True, True),
        ("urn:nld:oin:00000001823288444000:systeem:BRP-component", True, True),
        ("/relative/path", True, False),
        ("a/b:c", True, False),
        ("//host/path", True, False),
        ("", True, False),
        ("http://user:pw@host:80/p", True, True),
        ("http://[v1.fe]/", True, True),
        ("http://[::1%25eth0]/", False, False),
        ("1a:b", False, False),
        ("http://a b/", False, False),
        ("http://host/#a#b", False, False),
        ("http://host/%zz", False, False),
        ("http://host/ä", False, False),
    ],
)
def test_uri_grammars(value: str, reference: bool, absolute: bool) -> None:
    assert is_uri_reference(value) is reference
    assert is_absolute_uri(value) is absolute


# --- serialisation ------------------------------------------------------------------------------------


def make_event(data: object = None, **attributes: str | int | bool) -> CloudEvent:
    return CloudEvent({**STRUCTURED_BASE, **attributes}, data)


def test_to_binary_headers_and_body() -> None:
    event = make_event({"a": 1}, datacontenttype="application/json", subject="Zaak é", flag=True, n=7)
    headers, body = to_binary(event)
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "A234-1234-1234",
        "ce-source": "https://openconnector.example.nl",
        "ce-type": "nl.vng.zgw.zaken.zaak.created",
        "ce-subject": "Zaak%20%C3%A9",
        "ce-flag": "true",
        "ce-n": "7",
        "Content-Type": "application/json",
    }
    assert orjson.loads(body) == {"a": 1}


def test_to_binary_json_data_without_datacontenttype_gets_application_json() -> None:
    headers, body = to_binary(make_event([1, 2]))
    assert headers["Content-Type"] == "application/json"
    assert body == b"[1,2]"


def test_to_binary_json_string_is_encoded_once() -> None:
    _, body = to_binary(make_event('{"a":1}', datacontenttype="application/json"))
    assert body == b'"{\\"a\\":1}"'


def test_to_binary_text_and_bytes() -> None:
    assert to_binary(make_event("<a/>", datacontenttype="text/xml"))[1] == b"<a/>"
    headers, body = to_binary(make_event(b"\x00\x01"))
    assert body == b"\x00\x01"
    assert "Content-Type" not in headers


def test_to_binary_no_data_is_empty_body() -> None:
    headers, body = to_binary(make_event())
    assert body == b""
    assert "Content-Type" not in headers


def test_to_structured_document() -> None:
    headers, body = to_structured(make_event(b"hi", datacontenttype="image/png", n=3))
    assert headers == {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    assert orjson.loads(body) == {
        **STRUCTURED_BASE,
        "datacontenttype": "image/png",
        "n": 3,
        "data_base64": "aGk=",
    }


@pytest.mark.parametrize("serialise", [to_structured, to_binary])
def test_object_data_with_non_json_type_cannot_be_serialised(serialise: Any) -> None:
    with pytest.raises(ValueError, match="non-JSON datacontenttype"):
        serialise(make_event({"a": 1}, datacontenttype="text/plain"))


def test_to_batch() -> None:
    headers, body = to_batch([make_event(1), make_event(None, id="2")])
    assert headers == {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}
    assert [e.id for e in parse_http("POST", headers, body).events] == ["A234-1234-1234", "2"]
    assert to_batch([])[1] == b"[]"


def test_validate_event_reports_core_problems() -> None:
    event = CloudEvent({"specversion": "1.0", "id": "", "source": "a b", "type": "t", "x_y": "1"}, None)
    assert sorted(p.attribute or "" for p in validate_event(event)) == ["id", "source", "x_y"]
    assert validate_event(make_event({"a": 1}, datacontenttype="application/json")) == []


def test_event_properties_and_with_attributes() -> None:
    event = make_event({"a": 1}, subject="s", time="2024-06-15T10:30:00Z", n=1)
    assert (event.id, event.type, event.source, event.subject, event.time) == (
        "A234-1234-1234",
        "nl.vng.zgw.zaken.zaak.created",
        "https://openconnector.example.nl",
        "s",
        "2024-06-15T10:30:00Z",
    )
    assert event.extensions == {"n": 1}
    changed = event.with_attributes(subject=None, knativeerrorcode=500)
    assert changed.subject is None
    assert changed.get("knativeerrorcode") == 500
    assert event.subject == "s"  # the original is untouched


# --- interoperability with the cloudevents SDK ------------------------------------------------------


def test_sdk_reads_our_binary_and_structured_output() -> None:
    from cloudevents.core.bindings import http as sdk_http

    event = make_event({"a": "é"}, datacontenttype="application/json", subject='Zaak é "x" 100%')
    for to_wire, from_wire in (
        (to_binary, sdk_http.from_binary_event),
        (to_structured, sdk_http.from_structured_event),
    ):
        headers, body = to_wire(event)
        sdk_event = from_wire(sdk_http.HTTPMessage(headers=headers, body=body))
        assert sdk_event.get_attributes()["subject"] == 'Zaak é "x" 100%'
        assert sdk_event.get_data() == {"a": "é"}


def test_we_read_sdk_binary_output() -> None:
    from cloudevents.core.bindings import http as sdk_http
    from cloudevents.core.v1.event import CloudEvent as SdkEvent

    sdk_event = SdkEvent(
        attributes={
            "type": "nl.vng.x.created",
            "source": "/s",
            "id": "1",
            "subject": "é b",
            "datacontenttype": "application/json",
        },
        data={"k": 1},
    )
    message = sdk_http.to_binary_event(sdk_event)
    event = parse_one(message.headers, message.body)
    assert (event.subject, event.data) == ("é b", {"k": 1})
