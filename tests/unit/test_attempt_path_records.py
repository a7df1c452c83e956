"""The attempt path's shortcuts (positional records, one clock read) keep every field users see."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy
from tests.support.keys import sub_key

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent
from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.health import SubscriptionHealth
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.delivery.policy import Outcome
from openconnector.delivery.prepared import Prepared, cloudevents_reencoder
from openconnector.delivery.retry import Deliverer
from openconnector.delivery.sending import HttpSender, Response
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.messages.recorder import MessageRecorder, message_id
from openconnector.messages.store import MemoryMessageStore

KEY = sub_key("ns/sub")


@dataclass
class _State:
    key: ResourceKey
    target: DeliveryTarget
    health: SubscriptionHealth = field(default_factory=SubscriptionHealth)
    attempts: AttemptLog = field(default_factory=AttemptLog)


class _Observer:
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.outcomes: list[tuple[str, FinalOutcome, str | None]] = []

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        self.outcomes.append((event_id, outcome, reason))


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def _deliverer(observer: _Observer) -> Deliverer:
    return Deliverer(
        HttpSender(clock=lambda: 1_700_000_000.0),
        cloudevents_reencoder,
        observer,
        on_paused=None,
        clock=lambda: 1_700_000_000.0,
        sleep=_no_sleep,
        rng=random.Random(1),
    )


def _prepared() -> Prepared:
    return Prepared("e-1", "t", "urn:s", ContentMode.STRUCTURED, {}, b"{}", 10)


def test_record_attempt_fills_every_field_of_a_failed_attempt_with_its_retry() -> None:
    observer = _Observer()
    state = _State(KEY, DeliveryTarget(key=KEY, url="http://127.0.0.1:9/x"))
    headers = CIMultiDictProxy(CIMultiDict({"Retry-After": "3"}))
    response = Response(
        503, "HTTP 503 Service Unavailable", 1_700_000_001.5, 12.25, "3", b"busy", False, headers
    )
    _deliverer(observer).record_attempt(
        state, _prepared(), 2, response, Outcome.RETRYABLE, Destination.DEAD_LETTER, 4.5
    )
    [entry] = observer.attempts
    assert list(state.attempts) == [entry]
    assert len(entry.request_id) == 32
    assert int(entry.request_id, 16) >= 0
    assert (entry.event_id, entry.attempt, entry.time, entry.status_code, entry.latency_ms) == (
        "e-1",
        2,
        1_700_000_001.5,
        503,
        12.25,
    )
    assert (entry.error, entry.outcome, entry.destination, entry.retry_in) == (
        "HTTP 503 Service Unavailable",
        "retryable",
        Destination.DEAD_LETTER,
        4.5,
    )
    assert entry.response_headers is headers
    assert entry.body_excerpt == b"busy"
    assert entry.to_json()["retryInSeconds"] == 4.5


def test_record_attempt_of_a_success_has_no_error_and_no_retry() -> None:
    observer = _Observer()
    state = _State(KEY, DeliveryTarget(key=KEY, url="http://127.0.0.1:9/x"))
    response = Response(204, None, 1_700_000_002.0, 1.0)
    _deliverer(observer).record_attempt(
        state, _prepared(), 1, response, Outcome.SUCCESS, Destination.SUBSCRIBER
    )
    [entry] = observer.attempts
    assert (entry.status_code, entry.error, entry.outcome, entry.destination, entry.retry_in) == (
        204,
        None,
        "success",
        Destination.SUBSCRIBER,
        None,
    )
    assert entry.response_headers is None
    assert entry.body_excerpt == b""


def test_record_stored_reads_the_events_id_source_type_and_subject_as_its_properties_do() -> None:
    store = MemoryMessageStore()
    recorder = MessageRecorder(store, lambda key: None)
    events = [
        CloudEvent({"specversion": "1.0", "id": "e-1", "source": "urn:s", "type": "t.x", "subject": "s1"}),
        CloudEvent({"specversion": "1.0", "id": 7, "source": "urn:n", "type": "t.y"}),
    ]
    created = recorder.record_stored([(KEY, event) for event in events], now=1_700_000_000.0)
    assert created == [(KEY, f"{event.source}\0{event.id}") for event in events]  # (key, message key)
    for event in events:
        stored = store.get(KEY, message_id(event))
        assert stored is not None
        record = stored.record
        assert (record.event_id, record.source, record.type, record.subject) == (
            event.id,
            event.source,
            event.type,
            event.subject,
        )
        assert type(record.event_id) is str
