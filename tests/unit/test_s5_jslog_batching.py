"""The JetStream message log publishes the changes of one subscription of a flush in one message: what
every process applies from those messages is what it applied from one message per change, and a
record's sequence (stream sequence x RECORDS_PER_MESSAGE + its index) is the same in every process and
orders the records as they were recorded."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.keys import sub_key

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent
from openconnector.messages.jetstream_log import (
    RECORDS_PER_MESSAGE,
    JetStreamMessageLog,
    _grouped,
    record_sequence,
)
from openconnector.messages.model import MessageRecord, MessageStatus
from openconnector.messages.recorder import message_id
from openconnector.messages.store import MemoryMessageStore

KEYS = [sub_key("ns/a"), sub_key("ns/b"), sub_key("other/c")]


def _log() -> JetStreamMessageLog:
    bus: Any = SimpleNamespace(settings=SimpleNamespace(stream="T"), nats_client=None)
    return JetStreamMessageLog(bus, MemoryMessageStore())


def _event(n: int, size: int = 0) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": f"e-{n}", "type": "nl.example.thing", "source": "urn:example:src",
        "datacontenttype": "application/json",
    }  # fmt: skip
    return CloudEvent(attributes, {"n": n, "pad": "x" * size})


def _record(writer: JetStreamMessageLog, key: ResourceKey, event: CloudEvent) -> None:
    record = MessageRecord.pending(
        message_id(event), key.namespace, key.name, event.id, event.source, event.type, None, None,
        1_767_000_000.0,
    )  # fmt: skip
    writer.record(key, record, event)


# A script: (subscription index, action, event number); actions: record, outcome delivered/failed, mark.
_steps = st.lists(
    st.tuples(
        st.integers(0, 2), st.sampled_from(["record", "delivered", "failed", "discard"]), st.integers(0, 30)
    ),
    max_size=60,
)


def _play(writer: JetStreamMessageLog, steps: list[tuple[int, str, int]]) -> None:
    for index, action, n in steps:
        key = KEYS[index]
        if action == "record":
            _record(writer, key, _event(n))
        elif action == "delivered":
            writer.outcome(key, f"e-{n}", MessageStatus.DELIVERED, None)
        elif action == "failed":
            writer.outcome(key, f"e-{n}", MessageStatus.DEAD_LETTERED, "HTTP 500")
        else:
            writer.discard_id(key, message_id(_event(n)))


def _view(log: JetStreamMessageLog) -> dict[ResourceKey, list[tuple[int, str, str, str | None]]]:
    return {
        key: [
            (s.record.sequence, s.record.id, s.record.status.value, s.record.reason)
            for s in log.store.oldest_first(key, 0)
        ]
        for key in KEYS
    }


async def _drain(writer: JetStreamMessageLog) -> list[Any]:
    batch, writer._pending = writer._pending, []
    await writer.close()
    return batch


def _alone(pending: Any) -> dict[str, Any]:
    """A pending change as a message of its own carries it: the change, then its subscription's path."""
    _, path, change, *_ = pending
    return {**change, "key": path}


@settings(max_examples=60, deadline=None)
@given(_steps)
async def test_grouped_messages_apply_as_one_message_per_change(steps: list[tuple[int, str, int]]) -> None:
    """Every process (the writer, which holds its events, and another, which parses them) ends with
    the records, statuses and order that one message per change gave; the sequences of the records are
    the same in both processes and increase in the order they were recorded."""
    writer = _log()
    _play(writer, steps)
    batch = await _drain(writer)
    reader, single = _log(), _log()
    for sequence, (_, data, *_) in enumerate(_grouped(batch, writer._origin), start=1):
        change = orjson.loads(data)
        writer._apply(change, sequence)
        reader._apply(change, sequence)
    for sequence, pending in enumerate(batch, start=1):  # the format of one change per message
        single._apply(orjson.loads(orjson.dumps(_alone(pending))), sequence)
    assert _view(writer) == _view(reader)

    def without_sequences(log: JetStreamMessageLog) -> dict[ResourceKey, list[tuple[str, str, str | None]]]:
        return {key: [row[1:] for row in rows] for key, rows in _view(log).items()}

    assert without_sequences(reader) == without_sequences(single)
    for rows in _view(reader).values():
        sequences = [row[0] for row in rows]
        assert sequences == sorted(sequences)
        assert len(set(sequences)) == len(sequences)


async def test_one_message_per_subscription_per_flush() -> None:
    writer = _log()
    for n in range(5):
        _record(writer, KEYS[0], _event(n))
        writer.outcome(KEYS[0], f"e-{n}", MessageStatus.DELIVERED, None)
        _record(writer, KEYS[1], _event(n))
    batch = await _drain(writer)
    messages = _grouped(batch, writer._origin)
    assert len(messages) == 2
    reader = _log()
    for sequence, (_, data, *_) in enumerate(messages, start=1):
        reader._apply(orjson.loads(data), sequence)
    assert [s.record.sequence for s in reader.store.oldest_first(KEYS[0], 0)] == [
        record_sequence(1, n) for n in range(5)
    ]
    assert [s.record.sequence for s in reader.store.oldest_first(KEYS[1], 0)] == [
        record_sequence(2, n) for n in range(5)
    ]


async def test_a_message_holds_a_bounded_number_of_records_and_bytes() -> None:
    writer = _log()
    for n in range(RECORDS_PER_MESSAGE + 3):
        _record(writer, KEYS[0], _event(n))
    for n in range(10):
        _record(writer, KEYS[1], _event(10_000 + n, size=100_000))
    batch = await _drain(writer)
    messages = _grouped(batch, writer._origin)
    assert [subject.rsplit(".", 1)[0] for subject, *_ in messages].count("T_messages") == len(messages)
    assert all(len(data) < 512 * 1024 for _, data, *_ in messages)
    assert (
        len(messages) >= 2 + 3
    )  # RECORDS_PER_MESSAGE + 3 small records: 2 messages; 10 of 100 KB: 3 or more
    reader = _log()
    for sequence, (_, data, *_) in enumerate(messages, start=1):
        reader._apply(orjson.loads(data), sequence)
    assert len(list(reader.store.oldest_first(KEYS[0], 0))) == min(
        RECORDS_PER_MESSAGE + 3, reader.store.max_messages
    )
    assert len(list(reader.store.oldest_first(KEYS[1], 0))) == 10


async def test_a_message_of_the_earlier_format_still_applies() -> None:
    """A stream written before the batching (a record per message, other changes grouped) is read."""
    writer = _log()
    _record(writer, KEYS[0], _event(1))
    batch = await _drain(writer)
    reader = _log()
    reader._apply(orjson.loads(orjson.dumps(_alone(batch[0]))), 7)
    reader._apply(
        {"op": "changes", "origin": "elsewhere", "key": _alone(batch[0])["key"],
         "changes": [{"op": "outcome", "eventId": "e-1", "status": "delivered", "reason": None}]},
        8,
    )  # fmt: skip
    (stored,) = reader.store.oldest_first(KEYS[0], 0)
    assert stored.record.sequence == record_sequence(7, 0)
    assert stored.record.status is MessageStatus.DELIVERED
