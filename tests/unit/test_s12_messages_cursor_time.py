"""Pull cursors name their subscription and are bounded by what its log kept; since/until are exactly
RFC 3339 date-times with a zone."""

from __future__ import annotations

import datetime

import pytest
from tests.support.keys import sub_key

from openconnector.messages.api import parse_time
from openconnector.messages.model import MessageRecord, MessageStatus, decode_cursor, encode_cursor
from openconnector.messages.store import MemoryMessageStore
from openconnector.refusal import Refusal

KEY = sub_key("ns/sub")
OTHER = sub_key("ns/other")
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
UTC = datetime.UTC


def record(n: int) -> MessageRecord:
    return MessageRecord(
        id=f"msg_{n}", namespace="ns", subscription="sub", event_id=f"e-{n}", source="s", type="t",
        subject=None, time=NOW, status=MessageStatus.PENDING, received=NOW,
    )  # fmt: skip


def refused(cursor: str, kind: str, subscription: str | None = None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        decode_cursor(cursor, kind, subscription)
    return caught.value


def test_a_cursor_with_a_subscription_is_taken_only_for_that_subscription() -> None:
    cursor = encode_cursor("pull", 7, "ns/sub")
    assert decode_cursor(cursor, "pull", "ns/sub") == 7
    for other in ("ns/other", "other/sub", "ns/sub2", ""):
        found = refused(cursor, "pull", other)
        assert (found.status, found.slug) == (400, "invalid-cursor")
        assert found.detail == "cursor: not a cursor this API handed out"
    # A cursor naming no subscription (the form handed out before) is refused where one is asked for.
    assert refused(encode_cursor("pull", 7), "pull", "ns/sub").status == 400
    # The longest names there are still fit.
    longest = f"{'n' * 63}/{'s' * 253}"
    assert decode_cursor(encode_cursor("pull", 2**40, longest), "pull", longest) == 2**40


def test_the_pull_bound_is_the_newest_record_ever_kept_or_the_acknowledged_position() -> None:
    store = MemoryMessageStore(max_messages=2)
    assert store.pull_bound(KEY) == 0
    for n in range(5):
        store.add(KEY, record(n), None)
    newest = max(s.sequence for s in store.oldest_first(KEY, 0))
    assert store.pull_bound(KEY) == newest
    assert store.pull_bound(OTHER) == 0
    # Removing the newest record (a refused request's) does not lower it: a cursor handed out stays good.
    newest_record = next(store.newest_first(KEY, None))
    store.discard(KEY, newest_record)
    assert store.pull_bound(KEY) == newest
    # An acknowledgement read back from another process may be beyond what this view kept.
    store.acknowledge(KEY, newest + 100, NOW)
    assert store.pull_bound(KEY) == newest + 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02t03:04:05z", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05z", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02t03:04:05Z", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05-00:00", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T04:04:05.25+01:00", datetime.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
        ("2026-01-02T03:04:05.123456789Z", datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime.datetime(2024, 2, 29, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime.datetime(2017, 1, 1, tzinfo=UTC)),  # a leap second
    ],
)
def test_rfc3339_date_times_are_taken(text: str, expected: datetime.datetime) -> None:
    assert parse_time(text, "since") == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-W01-1T00:00Z",  # ISO 8601 week date
        "20260101T000000Z",  # ISO 8601 basic format
        "2026-01-01T00:00Z",  # no seconds
        "2026-01-01 00:00:00Z",  # a space for the T
        "2026-01-01T00:00:00+0100",  # an offset without a colon
        "2026-01-01T00:00:00+01",
        "2026-01-01",  # a date alone
        "2026-001T00:00:00Z",  # ordinal date
        "2026-01-01T00:00:00",  # no zone
        "2026-01-01T24:00:00Z",
        "2026-02-30T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "0000-01-01T00:00:00Z",  # RFC 3339, but before the first year a datetime holds
        "9999-12-31T23:59:60Z",  # a leap second after the last second a datetime holds
        "2026-01-01T00:00:00Z ",
        "yesterday",
        "",
        "2026-01-01T00:00:00." + "1" * 60 + "Z",  # over 64 characters
    ],
)
def test_other_forms_are_refused(text: str) -> None:
    with pytest.raises(Refusal) as caught:
        parse_time(text, "since")
    assert (caught.value.status, caught.value.slug) == (400, "invalid-filter")
    assert caught.value.detail.startswith("since: ")


def test_a_time_without_a_zone_is_told_to_give_one() -> None:
    with pytest.raises(Refusal) as caught:
        parse_time("2026-01-02T03:04:05", "until")
    assert "give a time zone" in caught.value.detail
