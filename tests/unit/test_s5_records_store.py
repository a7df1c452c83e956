"""The message log without a hash per delivery: records are kept by message key (source NUL event id) and
their id derived when read; the store's index by id is built on the first look-up. What any reader sees
(ids, look-ups by id and by event, pages, counts, bounds) is what a plain model of the eager store gives,
after any mix of records, sender retries, refusals, attempts, outcomes, expiry and reads; and the store
stays bounded in memory however many requests are refused."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.keys import sub_key

from openconnector.ce import CloudEvent
from openconnector.consumers.standard_webhooks import (
    message_key,
    webhook_message_id,
    webhook_message_id_of_key,
)
from openconnector.delivery.attempts import Attempt
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.messages.model import MessageRecord, MessageStatus
from openconnector.messages.recorder import MessageRecorder, message_id
from openconnector.messages.store import MemoryMessageStore

KEYS = [sub_key("ns/a"), sub_key("ns/b")]
SOURCES = ["urn:example:one", "urn:example:two"]
ALL_IDS = [webhook_message_id(source, f"e-{n}") for source in SOURCES for n in range(31)]


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _event(source: str, event_id: str) -> CloudEvent:
    attributes: dict[str, Any] = {"specversion": "1.0", "id": event_id, "type": "t", "source": source}
    return CloudEvent(attributes, None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_the_message_id_of_a_message_key_is_the_webhook_id(source: str, event_id: str) -> None:
    assert webhook_message_id_of_key(message_key(source, event_id)) == webhook_message_id(source, event_id)
    lazy = MessageRecord.pending(None, "ns", "sub", event_id, source, "t", None, None, 0.0)
    assert lazy.id == webhook_message_id(source, event_id)
    assert lazy.to_json()["id"] == webhook_message_id(source, event_id)


_operations = st.lists(
    st.one_of(
        # a request: deliveries (subscription, source, event number) recorded, then stored or refused
        st.tuples(
            st.just("request"),
            st.lists(
                st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 30)), min_size=1, max_size=3
            ),
            st.booleans(),
            st.floats(0, 20),
        ),
        st.tuples(st.just("attempt"), st.integers(0, 1), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("outcome"), st.integers(0, 1), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("get"), st.integers(0, 1), st.integers(0, 1), st.integers(0, 30)),
        st.tuples(st.just("every id"), st.just(0)),  # a look-up of every possible id
        st.tuples(st.just("expire"), st.floats(0, 40)),
        st.tuples(st.just("forget"), st.integers(0, 1)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=_operations, max_messages=st.integers(1, 12), max_age=st.floats(5, 100))
def test_the_store_gives_what_a_plain_model_of_the_eager_store_gives(
    ops: list[tuple[Any, ...]], max_messages: int, max_age: float
) -> None:
    clock = _Clock()
    store = MemoryMessageStore(max_messages=max_messages, max_age=max_age, clock=clock)
    recorder = MessageRecorder(store, lambda key: None)
    # The model: per subscription, the kept records oldest first, as (message id, event id, received,
    # status); what the eager store kept, keyed by the hashed id.
    model: dict[int, list[list[Any]]] = {0: [], 1: []}
    # Per subscription, event id -> the message id of its newest record (attempts and outcomes go there;
    # a removed record leaves its event without one until the next record of that event).
    newest_of: dict[int, dict[str, str]] = {0: {}, 1: {}}

    def removed(sub: int, entry: list[Any]) -> None:
        if newest_of[sub].get(entry[1]) == entry[0]:
            del newest_of[sub][entry[1]]

    def evict(sub: int) -> None:
        kept = model[sub]
        while kept and (len(kept) > max_messages or kept[0][2] < clock.now - max_age):
            removed(sub, kept.pop(0))

    def every_id_looked_up() -> None:
        for sub, key in enumerate(KEYS):
            kept = {entry[0] for entry in model[sub]}
            for mid in ALL_IDS:
                stored = store.get(key, mid)
                assert (stored is not None) == (mid in kept)
                assert stored is None or stored.record.id == mid

    def newest_record(sub: int, event_id: str) -> list[Any] | None:
        mid = newest_of[sub].get(event_id)
        return next(entry for entry in model[sub] if entry[0] == mid) if mid is not None else None

    for op in ops:
        if op[0] == "request":
            _, deliveries, refused, passed = op
            clock.now += passed
            plan = [(KEYS[sub], _event(SOURCES[src], f"e-{n}")) for sub, src, n in deliveries]
            created = recorder.record_stored(plan, now=clock.now)
            new: set[tuple[int, str]] = set()  # what this request added (a sender's retry adds nothing)
            for sub, src, n in deliveries:
                mid = webhook_message_id(SOURCES[src], f"e-{n}")
                existing = [entry for entry in model[sub] if entry[0] == mid]
                if existing:
                    existing[0][3] = MessageStatus.PENDING
                else:
                    model[sub].append([mid, f"e-{n}", clock.now, MessageStatus.PENDING])
                    newest_of[sub][f"e-{n}"] = mid
                    new.add((sub, mid))
                    evict(sub)
            if refused:
                recorder.discard(created)
                for sub in model:
                    for entry in model[sub]:
                        if (sub, entry[0]) in new:
                            removed(sub, entry)
                    model[sub] = [entry for entry in model[sub] if (sub, entry[0]) not in new]
        elif op[0] == "attempt":
            _, sub, n, retry = op
            attempt = Attempt("r", f"e-{n}", 1, clock.now, 500 if retry else 200, 1.0, None, "x",
                              retry_in=1.0 if retry else None)  # fmt: skip
            recorder.on_attempt(KEYS[sub], attempt)
            newest_entry = newest_record(sub, f"e-{n}")
            if newest_entry is not None and retry:
                newest_entry[3] = MessageStatus.RETRYING
        elif op[0] == "outcome":
            _, sub, n, delivered = op
            outcome = FinalOutcome.DELIVERED if delivered else FinalOutcome.DEAD_LETTERED
            recorder.on_outcome(KEYS[sub], f"e-{n}", outcome, None)
            newest_entry = newest_record(sub, f"e-{n}")
            if newest_entry is not None:
                newest_entry[3] = MessageStatus.DELIVERED if delivered else MessageStatus.DEAD_LETTERED
        elif op[0] == "get":
            _, sub, src, n = op
            mid = webhook_message_id(SOURCES[src], f"e-{n}")
            stored = store.get(KEYS[sub], mid)
            expected = [entry for entry in model[sub] if entry[0] == mid]
            assert (stored is None) == (not expected)
            if stored is not None:
                assert stored.record.id == mid
                assert stored.record.status is expected[0][3]
        elif op[0] == "every id":
            every_id_looked_up()
        elif op[0] == "expire":
            clock.now += op[1]
            store.expire()
            for sub in model:
                for entry in model[sub]:
                    if entry[2] < clock.now - max_age:
                        removed(sub, entry)
                model[sub] = [entry for entry in model[sub] if entry[2] >= clock.now - max_age]
        else:
            store.forget(KEYS[op[1]])
            model[op[1]] = []
            newest_of[op[1]] = {}
        for sub, key in enumerate(KEYS):
            newest = list(store.newest_first(key, None))
            assert [(s.record.id, s.record.status) for s in newest] == [
                (entry[0], entry[3]) for entry in reversed(model[sub])
            ]
            assert store.count(key) == len(model[sub])
            sequences = [s.record.sequence for s in newest]
            assert sequences == sorted(sequences, reverse=True)
            if newest:  # pages after a cursor in the middle
                middle = sequences[len(sequences) // 2]
                assert [s.record.sequence for s in store.oldest_first(key, middle)] == sorted(
                    q for q in sequences if q > middle
                )
                assert [s.record.sequence for s in store.newest_first(key, middle)] == [
                    q for q in sequences if q < middle
                ]
            if len(ops) % 2:  # every kept record by id (else only when the operations look one up)
                for entry in model[sub]:
                    stored = store.get(key, entry[0])
                    assert stored is not None
                    assert stored.record.id == entry[0]
        for n in range(31):  # across subscriptions, the newest record of an event id in each
            expected_ids = [newest_of[sub][f"e-{n}"] for sub in model if f"e-{n}" in newest_of[sub]]
            assert sorted(s.record.id for s in store.for_event(f"e-{n}")) == sorted(expected_ids)
            for sub, key in enumerate(KEYS):
                found = store.find_event(key, f"e-{n}")
                assert (None if found is None else found.record.id) == newest_of[sub].get(f"e-{n}")
    every_id_looked_up()


def test_refused_requests_leave_nothing_behind() -> None:
    """A refused request's records go, and so do their entries: a sender refused again and again (a
    backlog) never grows the store, whether its records are the newest or sit between others."""
    store = MemoryMessageStore(max_messages=100)
    recorder = MessageRecorder(store, lambda key: None)
    key = KEYS[0]
    recorder.record_stored([(key, _event(SOURCES[0], "kept-1"))], now=1.0)
    for n in range(5_000):
        first = recorder.record_stored([(key, _event(SOURCES[0], f"a-{n}"))], now=1.0)
        second = recorder.record_stored([(key, _event(SOURCES[1], f"b-{n}"))], now=1.0)
        recorder.discard(first)  # between the kept one and the second: a hole
        if n % 2:
            recorder.discard(second)
        else:
            recorder.record_stored([(key, _event(SOURCES[0], f"k-{n}"))], now=1.0)
    log = store._logs[key]
    assert 90 <= store.count(key) <= 100
    assert len(log.entries) - log.head <= 2 * 100 + 300  # the removed ones are dropped in batches
    assert len(log.by_event) + len(log.shadowed) == store.count(key)


def test_the_index_by_id_follows_evictions_and_removals() -> None:
    store = MemoryMessageStore(max_messages=5)
    recorder = MessageRecorder(store, lambda key: None)
    key = KEYS[0]
    events = [_event(SOURCES[0], f"e-{n}") for n in range(20)]
    for event in events[:5]:
        recorder.record_stored([(key, event)], now=1.0)
    assert store.get(key, message_id(events[0])) is not None  # indexes the five
    for event in events[5:12]:
        recorder.record_stored([(key, event)], now=1.0)
    log = store._logs[key]
    assert store.get(key, message_id(events[0])) is None
    assert store.get(key, message_id(events[11])) is not None
    assert sorted(log.by_id) == sorted(message_id(event) for event in events[7:12])  # none evicted kept
    store.discard_id(key, message_id(events[9]))
    assert store.get(key, message_id(events[9])) is None
    assert store.count(key) == 4


def test_a_sender_refused_again_and_again_leaves_no_entries() -> None:
    """Nothing kept, and every request refused (a backlog from the start): the list of entries stays
    empty, the new record being the oldest and the newest at once."""
    store = MemoryMessageStore()
    recorder = MessageRecorder(store, lambda key: None)
    key = KEYS[0]
    for n in range(1_000):
        recorder.discard(recorder.record_stored([(key, _event(SOURCES[0], f"e-{n}"))], now=1.0))
        recorder.discard(
            recorder.record_stored(
                [(key, _event(SOURCES[0], f"f-{n}")), (key, _event(SOURCES[1], f"f-{n}"))], now=1.0
            )
        )
    assert store.count(key) == 0
    assert store._logs[key].entries == []


def test_an_event_id_from_two_sources_is_two_messages() -> None:
    """Kept by event id, the newest of each: an id from a second source is a message of its own, the
    older one still found by a sender's retry and by a refusal, and gone from every index once removed."""
    store = MemoryMessageStore(max_messages=3)
    recorder = MessageRecorder(store, lambda key: None)
    key = KEYS[0]
    one, two = _event(SOURCES[0], "x"), _event(SOURCES[1], "x")
    assert len(recorder.record_stored([(key, one)], now=1.0)) == 1
    created_two = recorder.record_stored([(key, two)], now=1.0)
    assert store.count(key) == 2
    found = store.find_event(key, "x")
    assert found is not None
    assert found.record.source == SOURCES[1]  # attempts go to the newest
    assert recorder.record_stored([(key, one)], now=1.0) == []  # a retry of the older one: found
    assert store.get(key, message_id(one)) is not None
    recorder.discard(created_two)
    assert store.count(key) == 1
    assert store.find_event(key, "x") is None  # (as before: the newest went, none takes its place)
    assert recorder.record_stored([(key, one)], now=1.0) == []  # still found
    assert recorder.record_stored([(key, two)], now=1.0) != []  # new again
    # The older one evicted: gone from the index by message key too, so its retry is a new record.
    recorder.record_stored([(key, _event(SOURCES[0], "y"))], now=1.0)
    recorder.record_stored([(key, _event(SOURCES[0], "z"))], now=1.0)
    assert store.get(key, message_id(one)) is None
    assert store._logs[key].shadowed == {}
    assert recorder.record_stored([(key, one)], now=1.0) != []


def test_a_refusal_never_removes_another_sources_record() -> None:
    """A refused request's record was evicted meanwhile, and the same event id came from another
    source: the refusal removes nothing."""
    store = MemoryMessageStore(max_messages=1)
    recorder = MessageRecorder(store, lambda key: None)
    key = KEYS[0]
    created = recorder.record_stored([(key, _event(SOURCES[0], "x"))], now=1.0)
    recorder.record_stored([(key, _event(SOURCES[1], "x"))], now=1.0)  # evicts the first
    recorder.discard(created)
    assert [stored.record.source for stored in store.newest_first(key, None)] == [SOURCES[1]]
