"""The cheaper pieces of the JetStream message log (session 8, issue 15) against the formulas they
replace: time texts formatted once a second, an attempt's JSON and the record every process reads back
from it made at once from its values, and the store's look-up of a record by source and event id."""

from __future__ import annotations

import datetime
import math
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from tests.support.keys import sub_key
from tests.support.message_log_inputs import attempt_targets, header_lists

from openconnector.ce import CloudEvent
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.messages import model
from openconnector.messages.model import AttemptRecord, MessageRecord
from openconnector.messages.recorder import PendingAttempt, published_attempt, reads_message
from openconnector.messages.store import MemoryMessageStore

_ZONES: st.SearchStrategy[Any] = st.sampled_from([
    None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=2)),
    datetime.timezone(datetime.timedelta(0), "Z0"),
    datetime.timezone(datetime.timedelta(hours=-9, minutes=-30)),
])  # fmt: skip
_MOMENTS = st.one_of(
    st.datetimes(timezones=_ZONES),
    st.datetimes(datetime.datetime(2026, 1, 1), datetime.datetime(2026, 1, 1, 0, 0, 3), timezones=_ZONES),
    st.sampled_from([datetime.datetime.max, datetime.datetime.min]).map(
        lambda m: m.replace(tzinfo=datetime.UTC)
    ),
)


def _stdlib_rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@settings(max_examples=2000, deadline=None)
@given(st.lists(_MOMENTS, min_size=1, max_size=8))
def test_times_are_written_as_isoformat_and_the_rfc3339_formula_write_them(
    moments: list[datetime.datetime],
) -> None:
    for moment in moments:  # (several in a row: the second formatted last is reused when it fits)
        assert model.isoformat(moment) == moment.isoformat()
        if moment.tzinfo is not None:
            try:
                expected = _stdlib_rfc3339(moment)
            except OverflowError:
                continue
            assert model.rfc3339(moment) == expected
            assert model.rfc3339_of(moment) == expected
    assert model.rfc3339(None) is None


@settings(max_examples=3000, deadline=None)
@given(st.floats(-1e10, 4e10), st.floats(-2, 2))
def test_times_from_timestamps_next_to_a_second_are_written_as_isoformat(start: float, step: float) -> None:
    """fromtimestamp rounds to the microsecond, up into the next second too."""
    for moment in (start, start + step, math.floor(start) + 0.9999996, math.floor(start) + 1e-7):
        stamp = datetime.datetime.fromtimestamp(moment, datetime.UTC)
        assert model.isoformat(stamp) == stamp.isoformat()
        assert model.rfc3339(stamp) == _stdlib_rfc3339(stamp)


_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 10**6),
    st.sampled_from([0.0, -0.0, 1.0005]),
)
_RESPONSE_HEADERS = st.one_of(
    st.none(),
    header_lists.map(lambda items: CIMultiDictProxy(CIMultiDict(items))),
    header_lists.map(dict),
)


@st.composite
def _attempts(draw: st.DrawFn) -> Attempt:
    return Attempt(
        request_id="r", event_id=draw(st.sampled_from(["e-1", "é"])), attempt=draw(st.integers(0, 60)),
        time=draw(st.floats(0, 4e9)), status_code=draw(st.one_of(st.none(), st.integers(100, 599))),
        latency_ms=draw(_NUMBERS), error=draw(st.one_of(st.none(), st.text(max_size=20))),
        outcome=draw(st.sampled_from(["success", "retryable", "fatal", ""])),
        destination=draw(st.sampled_from(list(Destination))), retry_in=draw(st.one_of(st.none(), _NUMBERS)),
        response_headers=draw(_RESPONSE_HEADERS), body_excerpt=draw(st.binary(max_size=40)),
    )  # fmt: skip


def _event(binary_data: bool) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": "e-1", "type": "t", "source": "urn:s", "subject": "zaak é",
        "datacontenttype": "text/plain" if binary_data else "application/json",
    }  # fmt: skip
    return CloudEvent(attributes, b"raw" if binary_data else {"n": 1})


@settings(max_examples=1500, deadline=None)
@given(
    _attempts(), st.sampled_from(attempt_targets), st.sampled_from(["none", "id", "derived"]), st.booleans()
)
def test_published_is_the_json_of_the_record_and_the_record_read_back_from_it(
    attempt: Attempt, target: Any, binding: str, binary_data: bool
) -> None:
    """What the message log publishes of an attempt is the JSON of the record it materializes, and the
    record the writer applies when it reads it back is the one any process builds from those bytes."""

    def entry() -> PendingAttempt:
        pending = PendingAttempt(attempt, target)
        if binding != "none":
            record = MessageRecord.pending(
                "msg_given" if binding == "id" else None, "ns", "sub", "e-1", "urn:s", "t", None, None, 1.0
            )
            pending.bind(_event(binary_data), record)
        return pending

    published, applied = entry().published()
    eager = entry()
    assert repr(published) == repr(eager.to_json())  # (NaN is not equal to NaN: their reprs are)
    read_back = AttemptRecord.from_json(orjson.loads(orjson.dumps(published)))
    assert applied == read_back
    assert type(applied.latency_ms) is type(read_back.latency_ms)
    assert type(applied.retry_in) is type(read_back.retry_in)
    assert applied.to_json() == read_back.to_json()
    assert orjson.dumps(published) == orjson.dumps(eager.materialize().to_json())
    assert applied.response_headers is not published["responseHeaders"]
    assert applied.request_headers is not published["requestHeaders"]


@settings(max_examples=1500, deadline=None)
@given(
    _attempts(), st.sampled_from(attempt_targets), st.sampled_from(["none", "id", "derived"]), st.booleans()
)
def test_published_attempt_is_what_a_pending_attempt_publishes(
    attempt: Attempt, target: Any, binding: str, binary_data: bool
) -> None:
    """The JetStream log takes the Attempt itself: the JSON and record of the PendingAttempt the recorder
    made before, bound to the message when its headers read it (the target's headers, made once, else)."""
    message = None
    pending = PendingAttempt(attempt, target)
    if binding != "none":
        message = MessageRecord.pending(
            "msg_given" if binding == "id" else None,
            "ns",
            "sub",
            attempt.event_id,
            "urn:s",
            "t",
            None,
            None,
            1.0,
        )
        pending.bind(_event(binary_data), message)
        message.event = _event(binary_data)
    expected = pending.published()
    passed = message if reads_message(target, attempt.destination) else None
    for _ in range(2):  # (the second time the target's headers are the ones made the first time)
        for given_message in (passed, message):
            published, applied = published_attempt(attempt, target, given_message)
            assert repr(published) == repr(expected[0])
            assert orjson.dumps(published) == orjson.dumps(expected[0])
            assert applied == expected[1]


@st.composite
def _store_steps(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    return draw(
        st.lists(
            st.tuples(st.sampled_from(["record", "record", "discard", "get", "expire"]), st.integers(0, 5),
                      st.integers(0, 2)),
            max_size=40,
        )
    )  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(_store_steps(), st.integers(1, 4))
def test_holds_finds_what_a_look_up_by_id_finds(steps: list[tuple[str, int, int]], bound: int) -> None:
    """A record is kept by its source and event id (its id is their hash), also when the same event id
    comes from a second source, after removals and evictions by the count bound, and whether or not the
    records were indexed by id before."""
    key = sub_key("ns/a")
    clock = [1000.0]
    store = MemoryMessageStore(max_messages=bound, max_age=5.0, clock=lambda: clock[0])

    def record(n: int, source: int) -> MessageRecord:
        return MessageRecord.pending(None, "ns", "a", f"e-{n}", f"urn:s{source}", "t", None, None, clock[0])

    for action, n, source in steps:
        probe = record(n, source)
        assert store.holds(key, probe) == (store.get(key, record(n, source).id) is not None)
        if action == "record":
            store.record(key, probe, None)
        elif action == "discard":
            store.discard_id(key, probe.id)
        elif action == "get":
            store.get(key, probe.id)
        else:
            clock[0] += 3.0
            store.expire()
    for n in range(6):
        for source in range(3):
            probe = record(n, source)
            assert store.holds(key, probe) == (store.get(key, probe.id) is not None)
    assert not store.holds(sub_key("ns/other"), record(0, 0))
