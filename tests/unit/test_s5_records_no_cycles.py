"""What the message log lets go is freed at once (reference counting), not at the next full garbage
collection: no record, stored message or attempt is part of a reference cycle. A cycle would keep every
evicted record of a busy subscription alive until a full collection, and make that collection long."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from tests.support.keys import sub_key

from openconnector.ce import CloudEvent
from openconnector.delivery.attempts import Attempt
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.gateway.metrics import DeliveryMetricsObserver, GatewayMetrics
from openconnector.messages.model import AttemptRecord, MessageRecord
from openconnector.messages.recorder import MessageRecorder, PendingAttempt, _attempt_of_values
from openconnector.messages.store import MemoryMessageStore, StoredMessage

KEY = sub_key("ns/sub")
TARGET = DeliveryTarget(
    KEY, "http://127.0.0.1:9/hook", content_mode=ContentMode.BINARY, signing_secret="whsec_" + "A" * 32
)


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _alive(kind: type) -> int:
    return sum(1 for thing in gc.get_objects() if type(thing) is kind)


def _attempt_values_alive() -> int:
    """Attempts the memory store keeps as a tuple of values (its first item the function reading it back)."""
    return sum(
        1 for thing in gc.get_objects() if type(thing) is tuple and thing and thing[0] is _attempt_of_values
    )


def _read_everything(store: MemoryMessageStore) -> None:
    for stored in store.newest_first(KEY, None):
        stored.record.to_json()
        assert store.get(KEY, stored.record.id) is stored


def _deliver(store: MemoryMessageStore, recorder: MessageRecorder, n: int) -> None:
    """One event: recorded, then refused (every seventh), or tried twice and delivered."""
    attributes: dict[str, Any] = {"specversion": "1.0", "id": f"e-{n}", "type": "t", "source": "urn:s"}
    created = recorder.record_stored([(KEY, CloudEvent(attributes, {"n": n}))], now=1.0)
    if n % 7 == 0:
        recorder.discard(created)
        return
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain", "X-Big": "x" * (n % 3 * 400)}))
    for number in (1, 2):
        attempt = Attempt(
            "r", f"e-{n}", number, 1.0, 200, 1.0, None, "success",
            response_headers=headers, body_excerpt=b"ok",
        )  # fmt: skip
        recorder.on_attempt(KEY, attempt)
    recorder.on_outcome(KEY, f"e-{n}", FinalOutcome.DELIVERED, None)
    if n % 5 == 0:  # read: ids derived, attempts materialized, the index by id built
        _read_everything(store)


def test_evicted_and_refused_records_are_freed_without_a_collection(no_collector: None) -> None:
    store = MemoryMessageStore(max_messages=10)
    recorder = MessageRecorder(store, lambda key: TARGET, inner=DeliveryMetricsObserver(GatewayMetrics()))
    before = {
        kind: _alive(kind) for kind in (MessageRecord, StoredMessage, PendingAttempt, Attempt, AttemptRecord)
    }
    values_before = _attempt_values_alive()
    for n in range(300):
        _deliver(store, recorder, n)
    assert store.count(KEY) == 10
    assert _alive(MessageRecord) - before[MessageRecord] == 10
    assert _alive(StoredMessage) - before[StoredMessage] == 10
    # two attempts per record kept: lazy ones (values), or the records they became when read
    assert (
        _alive(PendingAttempt)
        - before[PendingAttempt]
        + _attempt_values_alive()
        - values_before
        + _alive(AttemptRecord)
        - before[AttemptRecord]
        == 20
    )
    assert _alive(Attempt) - before[Attempt] == 0  # copied: the response's headers are not kept
