"""prepare's size is the documented sum: body, id, type, source, header names and values, overheads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.delivery.prepared import _HEADER_OVERHEAD, _ITEM_OVERHEAD, prepare
from openconnector.delivery.target import ContentMode


@dataclass
class _Event:
    id: str
    type: str
    source: str


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=10),
    body=st.binary(max_size=64),
    event_id=st.text(max_size=8),
)
def test_size_is_the_documented_sum(headers: dict[str, str], body: bytes, event_id: str) -> None:
    def encoder(event: _Event, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
        return headers, body

    prepared = prepare(_Event(event_id, "t.x", "urn:s"), ContentMode.BINARY, encoder)
    expected = _ITEM_OVERHEAD + len(body) + len(event_id) + len("t.x") + len("urn:s")
    expected += sum(map(len, headers)) + sum(map(len, headers.values())) + _HEADER_OVERHEAD * len(headers)
    assert prepared.size == expected
