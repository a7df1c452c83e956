"""An explicit ``"data": null`` is data (issue 16): the JSON event format tells it from an absent member,
so the codec keeps it through parsing, attribute changes and every output mode."""

from __future__ import annotations

import orjson

from openconnector.ce import parse_structured, to_binary, to_structured
from openconnector.ce.codec import parse_http

EVENT = {"specversion": "1.0", "id": "e1", "type": "nl.a.b.c", "source": "urn:nld:x"}


def test_explicit_null_is_kept_in_structured_mode() -> None:
    event = parse_structured(orjson.dumps({**EVENT, "data": None}))
    assert event.data is None
    assert event.data_null is True
    _, body = to_structured(event)
    document = orjson.loads(body)
    assert "data" in document
    assert document["data"] is None
    assert "datacontenttype" not in document  # absent means JSON already


def test_an_absent_member_stays_absent() -> None:
    event = parse_structured(orjson.dumps(EVENT))
    assert event.data_null is False
    assert "data" not in orjson.loads(to_structured(event)[1])
    assert to_binary(event)[1] == b""


def test_explicit_null_survives_attribute_changes_and_binary_mode() -> None:
    event = parse_structured(orjson.dumps({**EVENT, "data": None})).with_attributes(subject="s")
    headers, body = to_binary(event)
    assert (headers["Content-Type"], body) == ("application/json", b"null")
    again = parse_http("POST", headers, body).events[0]
    assert again.data_null is True
    assert orjson.loads(to_structured(again)[1])["data"] is None


def test_data_base64_wins_over_a_null_data_member() -> None:
    event = parse_structured(orjson.dumps({**EVENT, "data": None, "data_base64": "aGk="}))
    assert (event.data, event.data_null) == (b"hi", False)
