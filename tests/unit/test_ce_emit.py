"""Building outbound events and the per-key Integer sequence."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from openconnector.ce import (
    CloudEventError,
    SequenceCounter,
    build_event,
    check_nlgov,
    format_time,
    parse_http,
    to_binary,
    to_structured,
)

TYPE = "nl.vng.zgw.zaken.zaak.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:openconnector"
NOW = datetime(2024, 6, 15, 10, 30, 0, 123456, tzinfo=UTC)


def test_build_event_attributes() -> None:
    event = build_event(type=TYPE, source=SOURCE, data={"zaak": "abc"}, event_id="zaak-abc-1", now=NOW)
    assert event.attributes == {
        "specversion": "1.0",
        "id": "zaak-abc-1",
        "source": SOURCE,
        "type": TYPE,
        "time": "2024-06-15T10:30:00.123Z",
        "datacontenttype": "application/json",
    }
    assert event.data == {"zaak": "abc"}


def test_build_event_draws_a_uuid4_without_a_persistent_id() -> None:
    first = build_event(type=TYPE, source=SOURCE, data={})
    second = build_event(type=TYPE, source=SOURCE, data={})
    assert uuid.UUID(first.id).version == 4
    assert first.id != second.id


def test_build_event_optional_attributes() -> None:
    event = build_event(
        type=TYPE,
        source=SOURCE,
        data=None,
        dataschema="https://schemas.example.nl/zaak/v1.json",
        subject="123456789",
        dataref="https://zaken.example.nl/api/v1/zaken/abc",
        sequence=42,
        now=NOW,
    )
    assert event.dataschema == "https://schemas.example.nl/zaak/v1.json"
    assert event.subject == "123456789"
    assert event.get("dataref") == "https://zaken.example.nl/api/v1/zaken/abc"
    assert (event.get("sequence"), event.get("sequencetype")) == ("42", "Integer")
    assert event.data is None


def test_build_event_time_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    time = build_event(type=TYPE, source=SOURCE, data={}).time
    assert time is not None
    assert time.endswith("Z")
    assert before <= datetime.fromisoformat(time) <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00.000Z"),
        (datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))), "2024-01-01T00:00:00.000Z"),
        (datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), "2024-01-01T00:00:00.999Z"),
    ],
)
def test_format_time(moment: datetime, expected: str) -> None:
    assert format_time(moment) == expected


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_event(type=TYPE, source=SOURCE, data={}, now=datetime(2024, 1, 1))


@pytest.mark.parametrize("sequence", [0, -1, 2**31])
def test_sequence_out_of_range_refused(sequence: int) -> None:
    with pytest.raises(CloudEventError) as caught:
        build_event(type=TYPE, source=SOURCE, data={}, sequence=sequence)
    assert [p.attribute for p in caught.value.problems] == ["sequence"]


@pytest.mark.parametrize(
    ("kwargs", "attribute"),
    [
        ({"source": "not a uri"}, "source"),
        ({"type": ""}, "type"),
        ({"dataschema": "/relative"}, "dataschema"),
        ({"subject": ""}, "subject"),
        ({"event_id": ""}, "id"),
        ({"dataref": "bad ref"}, "dataref"),
    ],
)
def test_invalid_inputs_raise_with_the_attribute(kwargs: dict[str, str], attribute: str) -> None:
    arguments: dict[str, object] = {"type": TYPE, "source": SOURCE, "data": {}, **kwargs}
    with pytest.raises(CloudEventError) as caught:
        build_event(**arguments)  # type: ignore[arg-type]
    assert [p.attribute for p in caught.value.problems] == [attribute]


def test_built_event_is_nlgov_conformant_and_round_trips() -> None:
    event = build_event(type=TYPE, source=SOURCE, data={"a": "é"}, sequence=1, subject="s", now=NOW)
    assert check_nlgov(event) == []
    for wire in (to_structured, to_binary):
        headers, body = wire(event)
        assert parse_http("POST", headers, body).events == (event,)


def test_sequence_counter_starts_at_one_per_key() -> None:
    counter = SequenceCounter()
    assert [counter.next("a"), counter.next("a"), counter.next("b"), counter.next("a")] == [1, 2, 1, 3]
    assert (counter.current("a"), counter.current("b"), counter.current("c")) == (3, 1, 0)
    assert counter.snapshot() == {"a": 3, "b": 1}


def test_sequence_counter_wraps_to_one() -> None:
    counter = SequenceCounter({"a": 2**31 - 2})
    assert [counter.next("a"), counter.next("a"), counter.next("a")] == [2**31 - 1, 1, 2]


@pytest.mark.parametrize("start", [-1, 2**31])
def test_sequence_counter_refuses_a_bad_seed(start: int) -> None:
    with pytest.raises(ValueError, match="sequence"):
        SequenceCounter({"a": start})
