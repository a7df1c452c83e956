"""to_structured's shortcut for JSON data gives the body the general path (_json_member) gives."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.ce import CloudEvent
from openconnector.ce.codec import STRUCTURED_CONTENT_TYPE, _json_member, to_structured

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/cloudevents+json",
        "text/json",
        "text/plain",
        "application/octet-stream",
    ]
)
_data = st.one_of(st.none(), _json, st.binary(max_size=16), st.text(max_size=16))


@settings(max_examples=400, deadline=None)
@given(
    content_type=_content_types,
    data=_data,
    data_null=st.booleans(),
    extensions=st.dictionaries(st.sampled_from(["subject", "ext1", "traceparent"]), st.text(max_size=8)),
)
def test_the_shortcut_equals_the_general_path(
    content_type: str | None, data: object, data_null: bool, extensions: dict[str, str]
) -> None:
    attributes: dict[str, object] = {"specversion": "1.0", "id": "1", "source": "urn:s", "type": "t"}
    attributes.update(extensions)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    event = CloudEvent(attributes, data, data_null and data is None)  # type: ignore[arg-type]
    try:
        expected: bytes | str = orjson.dumps(_json_member(event))
    except ValueError as error:
        expected = str(error)  # non-JSON datacontenttype with structured data: both refuse alike
    if isinstance(expected, str):
        with pytest.raises(ValueError, match="cannot be sent") as raised:
            to_structured(event)
        assert str(raised.value) == expected
        return
    assert to_structured(event) == ({"Content-Type": STRUCTURED_CONTENT_TYPE}, expected)


def test_json_data_is_sent_after_the_attributes_in_their_order() -> None:
    event = CloudEvent(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "urn:s",
            "type": "t",
            "datacontenttype": "application/json",
        },
        {"a": 1},
    )
    assert to_structured(event)[1] == (
        b'{"specversion":"1.0","id":"1","source":"urn:s","type":"t",'
        b'"datacontenttype":"application/json","data":{"a":1}}'
    )
