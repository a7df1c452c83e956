"""Session 6's cheaper message log on the delivery path gives what the general path gives: the response
headers an attempt keeps read back as the bounded headers of the response, and the memory store's
attempts kept as tuples of values read back as the bound PendingAttempts of the general path."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from tests.support.keys import sub_key
from tests.support.message_log_inputs import attempt_targets, header_lists

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent
from openconnector.consumers.standard_webhooks import webhook_message_id
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.delivery.target import DeliveryTarget
from openconnector.messages.model import AttemptRecord, LazyAttempt, MessageRecord, MessageStatus
from openconnector.messages.recorder import MessageRecorder, _bounded_headers, _kept_headers, _read_back
from openconnector.messages.store import MemoryMessageStore


@settings(max_examples=300, deadline=None)
@given(header_lists)
def test_kept_response_headers_read_back_as_the_bounded_headers(items: list[tuple[str, str]]) -> None:
    headers = CIMultiDictProxy(CIMultiDict(items))
    kept = _kept_headers(headers)
    assert _read_back(kept) == _bounded_headers(headers)
    assert list(_read_back(kept)) == list(_bounded_headers(headers))  # same order too
    if isinstance(kept, tuple):  # kept raw only while few and short: bounded at once either way
        assert len(kept) <= 50
        assert sum(len(value) for _, value in kept) <= 512
        assert all(type(pair) is tuple and len(pair) == 2 for pair in kept)


class _ThroughTheWriter:
    """The store behind a writer that is not the store itself: the recorder takes its general path
    (a PendingAttempt bound by the store), as for any writer but the memory store."""

    def __init__(self, store: MemoryMessageStore) -> None:
        self.store = store

    def record(
        self, key: ResourceKey, record: MessageRecord, event: Any, *, sequence: int | None = None
    ) -> bool:
        return self.store.record(key, record, event, sequence=sequence)

    def attempt(
        self, key: ResourceKey, event_id: str, entry: AttemptRecord | LazyAttempt, *, subscriber: bool
    ) -> None:
        self.store.attempt(key, event_id, entry, subscriber=subscriber)

    def outcome(self, key: ResourceKey, event_id: str, status: MessageStatus, reason: str | None) -> None:
        self.store.outcome(key, event_id, status, reason)

    def mark(self, key: ResourceKey, message_id: str, status: MessageStatus, reason: str | None) -> None:
        self.store.mark(key, message_id, status, reason)

    def discard_key(self, key: ResourceKey, message_key: str) -> None:
        self.store.discard_key(key, message_key)

    def acknowledge(self, key: ResourceKey, upto: int, now: datetime.datetime) -> int:
        return self.store.acknowledge(key, upto, now)


KEY = sub_key("ns/sub")
_TARGETS = attempt_targets

_steps = st.lists(
    st.one_of(
        # an attempt at event n
        st.tuples(
            st.just("attempt"),
            st.integers(0, 3),
            st.one_of(st.none(), st.sampled_from([200, 204, 404, 429, 500, 503])),
            st.sampled_from(list(Destination)),
            st.one_of(st.none(), st.floats(0, 3600)),
            header_lists,
            st.binary(max_size=40),
        ),
        # the sender sends event n again (same source and id, another subject: the stored event changes)
        st.tuples(st.just("again"), st.integers(0, 3), st.text("xyz", max_size=3)),
        st.tuples(st.just("outcome"), st.integers(0, 3), st.sampled_from(list(FinalOutcome))),
        st.tuples(st.just("read"), st.integers(0, 3)),
    ),
    max_size=40,
)


def _event(n: int, subject: str = "") -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": f"e-{n}", "type": "nl.example.thing", "source": "urn:example:src",
        "datacontenttype": "application/json", "subject": f"zaak-{n}{subject}",
        "time": "2026-01-02T03:04:05Z",
    }  # fmt: skip
    return CloudEvent(attributes, {"n": n})


@settings(max_examples=150, deadline=None)
@given(target=st.sampled_from(_TARGETS), steps=_steps)
def test_attempts_kept_as_values_read_back_as_the_general_path(
    target: DeliveryTarget | None, steps: list[tuple[Any, ...]]
) -> None:
    """The memory store's attempts as tuples of values (the recorder writing the store directly) give
    the records, attempts, statuses and next-attempt times that bound PendingAttempts give, whatever
    mix of attempts, a sender's resends (the stored event replaced), outcomes and reads."""
    direct_store, general_store = MemoryMessageStore(), MemoryMessageStore()
    direct = MessageRecorder(direct_store, lambda key: target)
    general = MessageRecorder(general_store, lambda key: target, writer=_ThroughTheWriter(general_store))
    assert direct._direct
    assert not general._direct
    for recorder in (direct, general):
        recorder.record_stored([(KEY, _event(n)) for n in range(3)], now=1_767_000_000.0)
    for number, step in enumerate(steps):
        if step[0] == "attempt":
            _, n, status, destination, retry_in, headers, excerpt = step
            attempt = Attempt(
                request_id="r", event_id=f"e-{n}", attempt=number + 1, time=1_767_000_001.0 + number,
                status_code=status, latency_ms=1.25 * number, error=None if status == 200 else "HTTP 500",
                outcome="retryable", destination=destination, retry_in=retry_in,
                response_headers=CIMultiDictProxy(CIMultiDict(headers)), body_excerpt=excerpt,
            )  # fmt: skip
            direct.on_attempt(KEY, attempt)
            general.on_attempt(KEY, attempt)
        elif step[0] == "again":
            for recorder in (direct, general):
                recorder.record_stored([(KEY, _event(step[1], step[2]))], now=1_767_000_100.0)
        elif step[0] == "outcome":
            for recorder in (direct, general):
                recorder.on_outcome(KEY, f"e-{step[1]}", step[2], "why")
        else:
            first, second = (store.find_event(KEY, f"e-{step[1]}") for store in (direct_store, general_store))
            # event 3 is recorded only once sent "again": attempts at it before find nothing
            assert (first is None) == (second is None)
            if first is not None and second is not None:
                assert first.to_json() == second.to_json()
    direct_json = [stored.to_json() for stored in direct_store.newest_first(KEY, None)]
    general_json = [stored.to_json() for stored in general_store.newest_first(KEY, None)]
    assert direct_json == general_json
    assert [s.record.attempts for s in direct_store.newest_first(KEY, None)] == [
        s.record.attempts for s in general_store.newest_first(KEY, None)
    ]


def test_more_attempts_than_kept_keep_the_first_and_the_newest_as_values() -> None:
    store = MemoryMessageStore()
    recorder = MessageRecorder(store, lambda key: None)
    recorder.record_stored([(KEY, _event(1))], now=1_767_000_000.0)
    for number in range(1, 61):
        recorder.on_attempt(KEY, Attempt("r", "e-1", number, 1_767_000_000.0 + number, 500, 1.0, "HTTP 500",
                                         "retryable", retry_in=1.0))  # fmt: skip
    stored = store.find_event(KEY, "e-1")
    assert stored is not None
    assert stored.attempt_count == 50
    assert [attempt.number for attempt in stored.attempts] == [1, *range(12, 61)]
    assert stored.status is MessageStatus.RETRYING


def test_a_writer_set_later_takes_the_attempts() -> None:
    """The gateway sets the JetStream log as the writer once it starts: attempts then go to it (a
    PendingAttempt), not into the store directly."""
    store = MemoryMessageStore()
    recorder = MessageRecorder(store, lambda key: None)
    assert recorder._direct
    writer = _ThroughTheWriter(store)
    attempts: list[object] = []
    writer.attempt = lambda key, event_id, entry, *, subscriber: attempts.append(entry)  # type: ignore[method-assign]
    recorder.writer = writer
    assert not recorder._direct
    recorder.record_stored([(KEY, _event(1))], now=1_767_000_000.0)
    recorder.on_attempt(KEY, Attempt("r", "e-1", 1, 1_767_000_001.0, 200, 1.0, None, "success"))
    assert [type(entry).__name__ for entry in attempts] == ["PendingAttempt"]
    recorder.writer = store
    assert recorder._direct


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=40, deadline=None)
@given(
    max_messages=st.integers(1, 30),
    max_age=st.floats(5, 100),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "add", "add", "again", "discard", "get", "expire"]),
            st.integers(0, 10_000),
            st.sampled_from([0.0, 0.5, 1.0, 3.0, 60.0]),  # seconds passed before it
        ),
        min_size=300,
        max_size=1200,
    ),
)
def test_a_full_log_drops_its_oldest_as_a_plain_model_does(
    max_messages: int, max_age: float, ops: list[tuple[str, int, float]]
) -> None:
    """The full log's cheap drop of its oldest record on an add (done in _append) keeps what a plain
    list keeps, over long runs that cross the lists' compaction, with look-ups by id (the index by
    id), refused records (holes), records of a second source for an event id, and expiry."""
    clock = _Clock()
    store = MemoryMessageStore(max_messages=max_messages, max_age=max_age, clock=clock)
    model: list[tuple[str, str, float]] = []  # (source, event id, received), oldest first
    added = 0
    for op, number, seconds in ops:
        clock.now += seconds
        if op in ("add", "again"):
            if op == "add" or not model:
                added += 1
                source, event_id = "urn:a", f"e-{added}"
            else:  # the newest event id from a second source: the older record stays findable
                source, event_id = "urn:b", model[-1][1]
                if any(entry[:2] == (source, event_id) for entry in model):
                    continue
            record = MessageRecord.pending(None, "ns", "sub", event_id, source, "t", None, None, clock.now)
            assert store.record(KEY, record, None)
            model.append((source, event_id, clock.now))
            while len(model) > max_messages or model[0][2] < clock.now - max_age:
                model.pop(0)
        elif op == "discard" and model:
            source, event_id, _ = model[number % len(model)]
            store.discard_key(KEY, f"{source}\0{event_id}")
            model.remove(model[number % len(model)])
        elif op == "get" and model:
            source, event_id, _ = model[number % len(model)]
            found = store.get(KEY, webhook_message_id(source, event_id))
            assert found is not None
            assert (found.source, found.event_id) == (source, event_id)
        elif op == "expire":
            store.expire()
            model = [entry for entry in model if entry[2] >= clock.now - max_age]
        kept = [(stored.source, stored.event_id) for stored in store.newest_first(KEY, None)]
        assert kept == [entry[:2] for entry in reversed(model)]
        assert store.count(KEY) == len(model)
    for source, event_id, _ in model:
        assert store.get(KEY, webhook_message_id(source, event_id)) is not None
