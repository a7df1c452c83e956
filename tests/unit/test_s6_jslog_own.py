"""The JetStream message log applies its own messages, when it reads them back, from the changes it
held when it published them (no JSON parse, no event parse): fast path == general path. Every process
sharing the stream (the writers and a process that only reads) ends with the same view, and a writer's
view is the one it had when it parsed its own messages."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.keys import sub_key

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent, to_structured
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.messages import jetstream_log
from openconnector.messages.jetstream_log import JetStreamMessageLog, own_prefix, record_sequence
from openconnector.messages.model import MessageRecord, MessageStatus
from openconnector.messages.recorder import PendingAttempt, message_id
from openconnector.messages.store import MemoryMessageStore

KEYS = [sub_key("ns/a"), sub_key("ns/b"), sub_key("other/c")]
TARGETS = {
    KEYS[0]: DeliveryTarget(KEYS[0], "http://127.0.0.1:9/a"),
    KEYS[1]: DeliveryTarget(
        KEYS[1], "http://127.0.0.1:9/b", content_mode=ContentMode.BINARY, headers={"X-Team": "b"},
        auth_headers={"Authorization": "Bearer secret"}, signing_secret="whsec_" + "A" * 32,
    ),
    KEYS[2]: DeliveryTarget(KEYS[2], "http://127.0.0.1:9/c"),
}  # fmt: skip
NOW = 1_767_000_000.0
ACKNOWLEDGED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class _Stream:
    """The message-log stream: what every process published, in order (sequence = index + 1)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.refuse = False


class _Client:
    is_connected = True

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream

    async def publish(self, subject: str, data: bytes) -> None:
        if self._stream.refuse:
            raise OSError("refused")
        self._stream.messages.append((subject, data))


class _Process:
    """One gateway process: its message log (writer and follower) and how far it has read the stream."""

    def __init__(self, stream: _Stream) -> None:
        bus: Any = SimpleNamespace(settings=SimpleNamespace(stream="T"), nats_client=_Client(stream))
        self.log = JetStreamMessageLog(bus, MemoryMessageStore())
        self.stream = stream
        self.read = 0

    def read_back(self) -> None:
        for sequence in range(self.read + 1, len(self.stream.messages) + 1):
            self.log.apply_message(self.stream.messages[sequence - 1][1], sequence)
        self.read = len(self.stream.messages)


def _event(n: int, time: str | None) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": f"e-{n}", "type": "nl.example.thing", "source": "urn:example:src",
        "datacontenttype": "application/json",
    }  # fmt: skip
    if time is not None:
        attributes["time"] = time
    return CloudEvent(attributes, {"n": n})


_TIMES = [None, "2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456+02:00", "2026-01-02T03:04:05.5-01:30"]


async def _act(process: _Process, key: ResourceKey, action: str, n: int, variant: int) -> None:
    log = process.log
    event_id = f"e-{n}"
    if action == "record":
        event = _event(n, _TIMES[variant % len(_TIMES)])
        record = MessageRecord.pending(
            None, key.namespace, key.name, event.id, event.source, event.type,
            None if variant % 2 else f"zaak-{n}", event.attributes.get("time"), NOW + n + variant / 7,
        )  # fmt: skip
        log.record(key, record, event)
    elif action == "attempt":
        attempt = Attempt(
            request_id="r", event_id=event_id, attempt=1 + variant % 3, time=NOW + n + variant / 1000,
            status_code=[200, 500, 503, None][variant % 4], latency_ms=variant * 1.234567,
            error=None if variant % 4 == 0 else "failed",
            outcome="success" if variant % 4 == 0 else "retryable",
            destination=Destination.SUBSCRIBER if variant % 5 else Destination.DEAD_LETTER,
            retry_in=None if variant % 3 == 0 else variant * 0.3333333,
        )  # fmt: skip
        log.attempt(key, event_id, PendingAttempt(attempt, TARGETS[key]), subscriber=variant % 5 != 0)
    elif action == "delivered":
        log.outcome(key, event_id, MessageStatus.DELIVERED, None)
    elif action == "failed":
        log.outcome(key, event_id, MessageStatus.DEAD_LETTERED, f"HTTP {500 + variant}")
    elif action == "discard":
        log.discard_id(key, message_id(_event(n, None)))
    elif action == "mark":
        log.mark(key, message_id(_event(n, None)), MessageStatus.PENDING, None)
    elif action == "ack":
        log.acknowledge(key, record_sequence(n, variant), ACKNOWLEDGED)
    elif action == "flush":
        await log._flush()
    elif action == "read":
        process.read_back()


def _view(log: JetStreamMessageLog) -> dict[ResourceKey, Any]:
    store = log.store
    return {
        key: (
            store.pull_position(key),
            [
                (stored.record.sequence, stored.record.to_json(), to_structured(stored.event)[1])
                for stored in store.oldest_first(key, 0)
            ],
        )
        for key in KEYS
    }


_ACTIONS = ["record", "record", "attempt", "attempt", "delivered", "failed", "discard", "flush", "read"]
Steps = list[tuple[int, int, str, int, int]]


def _steps(actions: list[str]) -> st.SearchStrategy[Steps]:
    return st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 2), st.sampled_from(actions), st.integers(0, 6),
                  st.integers(0, 40)),
        max_size=80,
    )  # fmt: skip


async def _play(steps: Steps) -> list[_Process]:
    """Two writers (0, 1) and a process that only reads (2) on one stream; at the end every process
    has published and read everything."""
    stream = _Stream()
    processes = [_Process(stream) for _ in range(3)]
    await _run_steps(processes, steps)
    return processes


async def _run_steps(processes: list[_Process], steps: Steps) -> None:
    """Each step by its process, then every process publishes what it holds and reads everything."""
    for who, index, action, n, variant in steps:
        await _act(processes[who], KEYS[index], action, n, variant)
    for process in processes:
        await process.log._flush()
    for process in processes:
        process.read_back()


@contextmanager
def _parsing_everything() -> Iterator[None]:
    """The general path only: own messages are parsed as another process's are."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JetStreamMessageLog, "_take_held", lambda self, data: None)
        yield


@settings(max_examples=80, deadline=None)
@given(_steps(_ACTIONS))
async def test_every_process_sees_the_same_log(steps: Steps) -> None:
    """Writers apply their own messages from what they held, the others parse them: the same records
    (every field, attempts included), sequences, statuses, events and order in every process."""
    writer, other, reader = await _play(steps)
    assert not writer.log._held  # every own message was taken back
    assert not other.log._held
    assert _view(writer.log) == _view(reader.log)
    assert _view(other.log) == _view(reader.log)


@settings(max_examples=80, deadline=None)
@given(_steps([*_ACTIONS, "mark", "ack"]))
async def test_held_changes_apply_as_their_json_does(steps: Steps) -> None:
    """With resends and pull acknowledgements too (applied at once by the process that made them):
    every process's view is the one it had when it parsed its own messages."""
    fast = await _play(steps)
    with _parsing_everything():
        general = await _play(steps)
    for quick, parsed in zip(fast, general, strict=True):
        assert _view(quick.log) == _view(parsed.log)


async def test_own_messages_are_known_by_their_start_and_others_are_parsed() -> None:
    stream = _Stream()
    writer, other = _Process(stream), _Process(stream)
    for process in (writer, other):
        await _act(process, KEYS[0], "record", 1 if process is writer else 2, 0)
        await process.log._flush()
    (_, mine), (_, theirs) = stream.messages
    assert mine.startswith(own_prefix(writer.log._origin) + b"1,")
    assert orjson.loads(mine)["origin"] == writer.log._origin  # still JSON for every other reader
    assert writer.log._take_held(theirs) is None
    assert writer.log._origin != other.log._origin
    writer.read_back()
    assert not writer.log._held
    assert [s.record.event_id for s in writer.log.store.oldest_first(KEYS[0], 0)] == ["e-1", "e-2"]


async def test_an_own_message_no_longer_held_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the bound of held messages the oldest is forgotten; read back, it is parsed instead."""
    monkeypatch.setattr(jetstream_log, "_HELD_MESSAGES", 2)
    stream = _Stream()
    writer, reader = _Process(stream), _Process(stream)
    for n in range(4):
        await _act(writer, KEYS[n % 3], "record", n, n)
        await writer.log._flush()
    assert sorted(writer.log._held) == [3, 4]
    writer.read_back()
    reader.read_back()
    assert _view(writer.log) == _view(reader.log)
    assert not writer.log._held


async def test_a_change_that_was_not_published_is_not_held() -> None:
    stream = _Stream()
    writer = _Process(stream)
    stream.refuse = True
    await _act(writer, KEYS[0], "record", 1, 0)
    await writer.log._flush()
    assert not writer.log._held
    assert not stream.messages


async def test_other_changes_wait_a_little_for_company_and_records_do_not() -> None:
    """An attempt or outcome alone is published after a few milliseconds; a record goes at the end of
    the loop turn and takes what waits with it, in order; flush() and close() take it too."""
    stream = _Stream()
    process = _Process(stream)
    await _act(process, KEYS[0], "delivered", 1, 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not stream.messages  # waiting for company
    await asyncio.sleep(jetstream_log._CHANGE_DELAY * 3)
    assert len(stream.messages) == 1  # then it goes on its own

    await _act(process, KEYS[0], "delivered", 2, 0)
    await _act(process, KEYS[0], "record", 3, 0)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(stream.messages) == 2  # with the record, in one message, the outcome first
    changes = orjson.loads(stream.messages[1][1])["changes"]
    assert [change["op"] for change in changes] == ["outcome", "record"]

    await _act(process, KEYS[1], "failed", 4, 0)
    await asyncio.wait_for(process.log.flush(), 1.0)  # a flush does not wait for the delay
    assert len(stream.messages) == 3
    await _act(process, KEYS[1], "failed", 5, 0)
    await process.log.close()
    assert len(stream.messages) == 4


async def test_what_is_held_is_bounded_in_bytes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower that lags behind does not make the writer hold more than the byte bound; what was
    let go is parsed when read back, and the views agree."""
    monkeypatch.setattr(jetstream_log, "_HELD_BYTES", 1500)
    stream = _Stream()
    writer, reader = _Process(stream), _Process(stream)
    for n in range(6):
        await _act(writer, KEYS[0], "record", n, 0)
        await writer.log._flush()
        assert writer.log._held_bytes <= 1500
    assert 0 < len(writer.log._held) < 6
    assert writer.log._held_bytes == sum(len(data) for _, data in stream.messages[-len(writer.log._held) :])
    writer.read_back()
    reader.read_back()
    assert _view(writer.log) == _view(reader.log)
    assert not writer.log._held
    assert writer.log._held_bytes == 0
