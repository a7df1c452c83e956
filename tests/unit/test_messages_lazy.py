"""The message log's cheap delivery path gives what the eager one gave: records made lazily (times kept as
text and a float, attempts as the values they were made from) read back the same, response headers are
bounded the same, and the store's bounds by count and age evict exactly what a plain model evicts."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from tests.support.keys import sub_key
from tests.support.message_log_inputs import attempt_targets, header_lists

from openconnector.ce import CloudEvent
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.target import DeliveryTarget
from openconnector.messages.model import AttemptRecord, MessageRecord, MessageStatus, rfc3339, utc
from openconnector.messages.recorder import (
    REDACTED,
    MessageRecorder,
    PendingAttempt,
    _bounded_headers,
    message_id,
    redacted_request_headers,
)
from openconnector.messages.store import MemoryMessageStore

KEY = sub_key("ns/sub")


def _event(n: int, **extra: Any) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": f"e-{n}", "type": "nl.example.thing", "source": "urn:example:src",
        "datacontenttype": "application/json", **extra,
    }  # fmt: skip
    return CloudEvent(attributes, {"n": n})


def _eager_bounded(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The response-header bound as it was written before the fast path: at most 50 names, values cut
    at 512 characters, cookies and auth challenges redacted."""
    if not headers:
        return {}
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if len(kept) >= 50:
            break
        lower = name.lower()
        kept[str(name)] = REDACTED if lower in ("set-cookie", "www-authenticate") else str(value)[:512]
    return kept


def _eager_attempt(
    attempt: Attempt, target: DeliveryTarget | None, event: CloudEvent | None, webhook_id: str
) -> AttemptRecord:
    """The attempt record as the recorder built it at once, before it became lazy."""
    excerpt = attempt.body_excerpt.decode("utf-8", "replace") if attempt.body_excerpt else ""
    return AttemptRecord(
        time=utc(attempt.time),
        latency_ms=attempt.latency_ms,
        response_status=attempt.status_code,
        response_headers=_eager_bounded(attempt.response_headers),
        response_body_excerpt=excerpt,
        error=attempt.error,
        request_headers=(
            {} if target is None else redacted_request_headers(target, event, attempt.destination, webhook_id)
        ),
        number=attempt.attempt,
        outcome=attempt.outcome,
        destination=attempt.destination.value,
        retry_in=attempt.retry_in,
    )


@settings(max_examples=200, deadline=None)
@given(header_lists)
def test_bounded_response_headers_fast_path_equals_the_general_loop(items: list[tuple[str, str]]) -> None:
    headers = CIMultiDictProxy(CIMultiDict(items))
    assert _bounded_headers(headers) == _eager_bounded(headers)
    assert list(_bounded_headers(headers)) == list(_eager_bounded(headers))  # same order too


_targets = attempt_targets


@settings(max_examples=150, deadline=None)
@given(
    target=st.sampled_from(_targets),
    status=st.one_of(st.none(), st.sampled_from([200, 204, 301, 404, 429, 500, 503])),
    destination=st.sampled_from(list(Destination)),
    retry_in=st.one_of(st.none(), st.floats(0, 3600)),
    excerpt=st.binary(max_size=40),
    headers=header_lists,
    bound=st.booleans(),
    number=st.integers(1, 60),
)
def test_a_lazy_attempt_reads_back_as_the_eager_record(
    target: DeliveryTarget | None,
    status: int | None,
    destination: Destination,
    retry_in: float | None,
    excerpt: bytes,
    headers: list[tuple[str, str]],
    bound: bool,
    number: int,
) -> None:
    event = _event(1, subject="zaak-1", time="2026-01-02T03:04:05Z")
    attempt = Attempt(
        request_id="r", event_id=event.id, attempt=number, time=1_767_000_000.123, status_code=status,
        latency_ms=12.3456, error=None if status == 200 else "HTTP 500", outcome="retryable",
        destination=destination, retry_in=retry_in,
        response_headers=CIMultiDictProxy(CIMultiDict(headers)), body_excerpt=excerpt,
    )  # fmt: skip
    lazy = PendingAttempt(attempt, target)
    webhook_id = message_id(event) if bound else ""
    if bound:
        lazy.bind(
            event,
            MessageRecord.pending(None, "ns", "sub", event.id, event.source, event.type, None, None, 0.0),
        )
    expected = _eager_attempt(attempt, target, event if bound else None, webhook_id)
    assert lazy.materialize() == expected
    assert lazy.to_json() == expected.to_json()
    assert lazy.materialize() is lazy.materialize()  # built once
    assert (lazy.time, lazy.latency_ms, lazy.retry_in) == (expected.time, expected.latency_ms, retry_in)


@settings(max_examples=100, deadline=None)
@given(
    time_text=st.one_of(
        st.none(), st.just("2026-01-02T03:04:05Z"), st.just("2026-01-02T03:04:05.123456+02:00"),
        st.just("not a time"), st.integers(),
    ),
    subject=st.one_of(st.none(), st.text(max_size=5)),
)  # fmt: skip
def test_a_pending_record_reads_back_as_the_eager_record(time_text: object, subject: str | None) -> None:
    received_at = 1_767_000_000.5
    received = utc(received_at)
    try:
        moment = datetime.datetime.fromisoformat(str(time_text)) if time_text is not None else received
    except ValueError:
        moment = received
    eager = MessageRecord(
        id="msg_1", namespace="ns", subscription="sub", event_id="e-1", source="s", type="t",
        subject=subject, time=moment, status=MessageStatus.PENDING, received=received,
    )  # fmt: skip
    lazy = MessageRecord.pending("msg_1", "ns", "sub", "e-1", "s", "t", subject, time_text, received_at)
    assert lazy == eager
    assert lazy.to_json() == eager.to_json()
    assert (lazy.time, lazy.received) == (moment, received)


def test_the_recorder_keeps_what_it_kept_before() -> None:
    """Through the recorder and the store: the record and its attempts, as JSON, are those the eager
    code made (request headers redacted, the stored event's CloudEvents headers in binary mode)."""
    target = _targets[2]
    assert target is not None
    store = MemoryMessageStore()
    recorder = MessageRecorder(store, lambda key: target)
    event = _event(7, subject="zaak-7", time="2026-01-02T03:04:05Z", traceparent="00-abc")
    created = recorder.record_stored([(KEY, event)], now=1_767_000_000.0)
    assert created == [(KEY, f"{event.source}\0{event.id}")]  # the message key: no hash on this path
    first = Attempt(
        request_id="r1", event_id=event.id, attempt=1, time=1_767_000_001.0, status_code=503,
        latency_ms=5.0, error="HTTP 503", outcome="retryable", retry_in=2.0,
        response_headers=CIMultiDictProxy(CIMultiDict({"Set-Cookie": "a=b", "Retry-After": "2"})),
        body_excerpt=b"busy",
    )  # fmt: skip
    second = Attempt(
        request_id="r2", event_id=event.id, attempt=2, time=1_767_000_003.0, status_code=200,
        latency_ms=4.0, error=None, outcome="success",
    )  # fmt: skip
    recorder.on_attempt(KEY, first)
    stored = store.find_event(KEY, event.id)
    assert stored is not None
    assert stored.record.status is MessageStatus.RETRYING
    assert stored.record.next_attempt == utc(1_767_000_001.0) + datetime.timedelta(seconds=2.005)
    recorder.on_attempt(KEY, second)
    body = stored.record.to_json()
    webhook_id = message_id(event)
    assert body["attempts"] == [
        _eager_attempt(first, target, event, webhook_id).to_json(),
        _eager_attempt(second, target, event, webhook_id).to_json(),
    ]
    assert body["attempts"][0]["requestHeaders"]["Authorization"] == REDACTED
    assert body["attempts"][0]["requestHeaders"]["ce-traceparent"] == "00-abc"
    assert body["attempts"][0]["responseHeaders"]["Set-Cookie"] == REDACTED
    assert body["time"] == "2026-01-02T03:04:05.000Z"
    assert body["received"] == rfc3339(utc(1_767_000_000.0))
    assert body["attemptCount"] == 2
    assert body["nextAttempt"] is None


def test_attempts_beyond_the_bound_keep_the_first_and_the_newest() -> None:
    store = MemoryMessageStore()
    recorder = MessageRecorder(store, lambda key: None)
    event = _event(1)
    recorder.record_stored([(KEY, event)], now=1_767_000_000.0)
    for number in range(1, 61):
        attempt = Attempt(
            request_id=f"r{number}", event_id=event.id, attempt=number, time=1_767_000_000.0 + number,
            status_code=500, latency_ms=1.0, error="HTTP 500", outcome="retryable", retry_in=1.0,
        )  # fmt: skip
        recorder.on_attempt(KEY, attempt)
    stored = store.find_event(KEY, event.id)
    assert stored is not None
    numbers = [attempt.number for attempt in stored.record.attempts]
    assert numbers == [1, *range(12, 61)]


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.floats(0, 30)),  # (add, seconds passed before it)
        st.tuples(st.just("discard"), st.integers(0, 400)),
        st.tuples(st.just("expire"), st.floats(0, 30)),
    ),
    max_size=400,
)


@settings(max_examples=60, deadline=None)
@given(ops=_operations, max_messages=st.integers(1, 40), max_age=st.floats(5, 200))
def test_the_bounds_evict_what_a_plain_model_evicts(
    ops: list[tuple[str, float]], max_messages: int, max_age: float
) -> None:
    """Count and age bounds after any mix of adds, discards (a refused request) and expiry runs: the
    store keeps what a list that drops its oldest entries keeps, newest first, and pages still work."""
    clock = _Clock()
    store = MemoryMessageStore(max_messages=max_messages, max_age=max_age, clock=clock)
    model: list[tuple[int, float]] = []  # (n, received), oldest first
    added = 0
    for op, value in ops:
        if op == "add":
            clock.now += value
            added += 1
            store.record(
                KEY,
                MessageRecord.pending(
                    f"msg_{added}", "ns", "sub", f"e-{added}", "s", "t", None, None, clock.now
                ),
                None,
            )
            model.append((added, clock.now))
            while len(model) > max_messages or model[0][1] < clock.now - max_age:
                model.pop(0)
        elif op == "discard":
            n = int(value)
            store.discard_id(KEY, f"msg_{n}")
            model = [entry for entry in model if entry[0] != n]
        else:
            clock.now += value
            store.expire()
            model = [entry for entry in model if entry[1] >= clock.now - max_age]
        kept = [stored.record.id for stored in store.newest_first(KEY, None)]
        assert kept == [f"msg_{n}" for n, _ in reversed(model)]
        assert store.count(KEY) == len(model)
    for n, _ in model:
        assert store.find_event(KEY, f"e-{n}") is not None
    if model:
        middle = model[len(model) // 2][0]
        stored = store.get(KEY, f"msg_{middle}")
        assert stored is not None
        after = [s.record.id for s in store.oldest_first(KEY, stored.record.sequence)]
        assert after == [f"msg_{n}" for n, _ in model if n > middle]


def test_a_failure_to_rebuild_request_headers_reaches_no_reader(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Built when read: should the redaction ever fail, the attempt still reads back, without headers
    (never the unredacted ones), and the failure is logged."""
    import openconnector.messages.recorder as recorder_module

    def broken(*args: object) -> dict[str, str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(recorder_module, "redacted_request_headers", broken)
    attempt = Attempt(
        request_id="r", event_id="e-1", attempt=1, time=1_767_000_000.0, status_code=200, latency_ms=1.0,
        error=None, outcome="success",
    )  # fmt: skip
    lazy = PendingAttempt(attempt, _targets[1])
    with caplog.at_level("ERROR"):
        record = lazy.materialize()
    assert record.request_headers == {}
    assert record.response_status == 200
    assert "rebuilding the request headers" in caplog.text


async def test_the_jetstream_log_publishes_the_attempt_the_eager_code_published() -> None:
    """With --bus jetstream an attempt is published at once: its JSON (request headers from this
    process's view of the message) is the one the eager recorder published, and applying it back gives
    the same record."""
    from types import SimpleNamespace

    from openconnector.messages.jetstream_log import JetStreamMessageLog

    target = _targets[2]
    assert target is not None
    view = MemoryMessageStore()
    bus: Any = SimpleNamespace(settings=SimpleNamespace(stream="T"), nats_client=None)
    journal = JetStreamMessageLog(bus, view)
    event = _event(3, traceparent="00-def")
    view.record(KEY, MessageRecord.pending(message_id(event), "ns", "sub", event.id, event.source,
                                           event.type, None, None, 1_767_000_000.0), event)  # fmt: skip
    attempt = Attempt(
        request_id="r", event_id=event.id, attempt=1, time=1_767_000_001.0, status_code=500,
        latency_ms=2.0, error="HTTP 500", outcome="retryable", retry_in=1.5,
        response_headers=CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain"})), body_excerpt=b"no",
    )  # fmt: skip
    journal.attempt(KEY, event.id, PendingAttempt(attempt, target), subscriber=True)
    expected = _eager_attempt(attempt, target, event, message_id(event)).to_json()
    published = [change for _, _, change, *_ in journal._pending if change["op"] == "attempt"]
    assert [change["attempt"] for change in published] == [expected]
    await journal.close()
    applied = AttemptRecord.from_json(published[0]["attempt"])
    assert applied.to_json() == expected
