"""Fills the message store: a record when a delivery is stored, attempts and outcomes through the
delivery observer seam (:class:`~openconnector.delivery.outcomes.DeliveryObserver`).

Request headers are rebuilt from the subscription's target and the event, never copied from the wire:
credentials (``auth`` headers from Secrets, dead-letter credentials) and signatures read
``[redacted]``. Response headers and body excerpts from subscribers are bounded.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from multidict import CIMultiDictProxy

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent, encode_header_value
from openconnector.ce.codec import JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from openconnector.consumers.standard_webhooks import webhook_message_id
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.outcomes import DeliveryObserver, FinalOutcome
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.messages.model import (
    AttemptRecord,
    AttemptValues,
    LazyAttempt,
    MessageRecord,
    MessageStatus,
    rfc3339_of,
    utc,
)
from openconnector.messages.store import MAX_ATTEMPTS_KEPT, MemoryMessageStore

__all__ = [
    "REDACTED",
    "MessageRecorder",
    "MessageWriter",
    "PendingAttempt",
    "message_id",
    "redacted_request_headers",
]

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
_MAX_RESPONSE_HEADERS = 50
_MAX_HEADER_VALUE = 512
_SIGNATURE_HEADERS = ("webhook-signature", "webhook-timestamp")
# A subscriber's cookies and auth challenges are nobody's business in a log.
_HIDDEN = frozenset({"set-cookie", "www-authenticate"})
# Keyed by the outcome's value: a str hashes in C, an Enum member through Enum.__hash__ (Python).
_OUTCOMES = {
    FinalOutcome.DELIVERED._value_: MessageStatus.DELIVERED,
    FinalOutcome.DEAD_LETTERED._value_: MessageStatus.DEAD_LETTERED,
    FinalOutcome.DROPPED._value_: MessageStatus.DROPPED,
}


class MessageWriter(Protocol):
    """Changes to the message log: applied to the store at once (memory), or published to JetStream
    and applied by every process as it reads them back (:mod:`openconnector.messages.jetstream_log`)."""

    def record(
        self, key: ResourceKey, record: MessageRecord, event: Any, *, sequence: int | None = None
    ) -> bool: ...

    def attempt(
        self, key: ResourceKey, event_id: str, entry: AttemptRecord | LazyAttempt, *, subscriber: bool
    ) -> None: ...

    def outcome(self, key: ResourceKey, event_id: str, status: MessageStatus, reason: str | None) -> None: ...

    def mark(self, key: ResourceKey, message_id: str, status: MessageStatus, reason: str | None) -> None: ...

    def discard_key(self, key: ResourceKey, message_key: str) -> None:
        """Remove the record of ``message_key`` (source NUL event id): its request was refused."""

    def acknowledge(self, key: ResourceKey, upto: int, now: datetime.datetime) -> int: ...


def message_id(event: CloudEvent) -> str:
    """A message's id: the Standard Webhooks ``webhook-id`` (hash of source and id): unique per event,
    and together with the subscription per message."""
    return webhook_message_id(event.source, event.id)


def redacted_request_headers(
    target: DeliveryTarget, event: CloudEvent | None, destination: Destination, webhook_id: str
) -> dict[str, str]:
    """The headers an attempt sends, secrets replaced by ``[redacted]``."""
    headers: dict[str, str] = {}
    if destination is Destination.DEAD_LETTER:
        headers["Content-Type"] = STRUCTURED_CONTENT_TYPE
        headers.update({name: REDACTED for name in target.dead_letter_headers})
        return headers
    headers.update(target.headers)
    if target.content_mode is ContentMode.BINARY and event is not None:
        for name, value in event.attributes.items():
            if name == "datacontenttype":
                headers["Content-Type"] = str(value)
            else:
                headers[f"ce-{name}"] = encode_header_value(value)
        if "Content-Type" not in headers and (event.data is not None or event.data_null):
            headers["Content-Type"] = JSON_CONTENT_TYPE  # what the codec sends for untyped data
    else:
        # "Shown as sent" (docs/messages.md): the codec's structured Content-Type, charset included.
        headers["Content-Type"] = STRUCTURED_CONTENT_TYPE
    headers.update({name: REDACTED for name in target.auth_headers})
    if target.signing_secret is not None:
        headers["webhook-id"] = webhook_id
        headers.update({name: REDACTED for name in _SIGNATURE_HEADERS})
    return headers


def _bounded_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    return _bounded_items(headers.items(), len(headers))


def _bounded_items(items: Iterable[tuple[str, str]], count: int) -> dict[str, str]:
    """:func:`_bounded_headers` of ``count`` header items."""
    if count <= _MAX_RESPONSE_HEADERS:  # all of them: one comprehension, no count to keep
        return {
            str(name): REDACTED if name.lower() in _HIDDEN else str(value)[:_MAX_HEADER_VALUE]
            for name, value in items
        }
    kept: dict[str, str] = {}
    for name, value in items:
        if len(kept) >= _MAX_RESPONSE_HEADERS:
            break
        kept[str(name)] = REDACTED if name.lower() in _HIDDEN else str(value)[:_MAX_HEADER_VALUE]
    return kept


def _kept_headers(headers: Mapping[str, str] | None) -> dict[str, str] | tuple[tuple[str, str], ...]:
    """The response headers an attempt keeps: a response's headers (a CIMultiDictProxy) as one tuple of
    (name, value) pairs when they are few and short (bounded when read: :func:`_read_back`; tuples of
    strings, which the garbage collector stops tracking), else bounded now. Either way what is kept is
    bounded however long the record lives, and the response's own objects are not kept. (One pass over
    the multidict: iterating one costs more than the few pairs it yields.)"""
    if type(headers) is CIMultiDictProxy and len(headers) <= _MAX_RESPONSE_HEADERS:
        items = tuple(headers.items())
        length = 0
        for _, value in items:
            length += len(value)
        if length <= _MAX_HEADER_VALUE:
            return items
    return _bounded_headers(headers)


def _read_back(kept: dict[str, str] | tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The bounded response headers of what :func:`_kept_headers` kept."""
    if isinstance(kept, dict):
        return kept
    return _bounded_items(kept, len(kept))


class PendingAttempt:
    """An attempt for the message log as the values it was made from (a :class:`LazyAttempt`): the
    delivery path only copies them (not the :class:`Attempt`: it would keep the response's headers, and
    their objects, alive with the record); the redacted request headers, the datetime, the bounded
    response headers and the decoded body excerpt are made when the log is read. What is kept of the
    response headers is bounded at once (:func:`_kept_headers`)."""

    __slots__ = (
        "_record",
        "body_excerpt",
        "destination",
        "error",
        "event",
        "event_id",
        "message_id",
        "number",
        "outcome",
        "response_headers",
        "response_status",
        "retry_in",
        "source",
        "started",
        "target",
        "took_ms",
    )

    def __init__(self, attempt: Attempt, target: DeliveryTarget | None) -> None:
        self.started = attempt.time
        self.took_ms = attempt.latency_ms
        self.response_status = attempt.status_code
        headers = attempt.response_headers
        self.response_headers = _kept_headers(headers) if headers else _NO_HEADERS
        self.body_excerpt = attempt.body_excerpt
        self.error = attempt.error
        self.number = attempt.attempt
        self.outcome = attempt.outcome
        self.destination = attempt.destination
        self.retry_in = attempt.retry_in
        self.event_id = attempt.event_id
        self.target = target
        # The message's event, id (None: not derived yet) and source, from the store when the attempt
        # joins its record (bind). Not the record itself: it holds this attempt, and a cycle would keep an
        # evicted record until a full garbage collection.
        self.event: CloudEvent | None = None
        self.message_id: str | None = None
        self.source: str | None = None
        self._record: AttemptRecord | None = None

    @property
    def time(self) -> datetime.datetime:
        return utc(self.started)

    @property
    def latency_ms(self) -> float:
        return self.took_ms

    def bind(self, event: Any, message: MessageRecord) -> None:
        self.event = event
        self.message_id = message.known_id
        self.source = message.source

    def materialize(self) -> AttemptRecord:
        record = self._record
        if record is None:
            record = self._record = _attempt_record(
                self.started, self.took_ms, self.retry_in, self.response_status, self.response_headers,
                self.body_excerpt, self.error, self.number, self.outcome, self.destination,
                self._request_headers(),
            )  # fmt: skip
        return record

    def _request_headers(self) -> dict[str, str]:
        return _request_headers(
            self.target, self.destination, self.event, self.message_id, self.source, self.event_id
        )

    def to_json(self) -> dict[str, Any]:
        return self.materialize().to_json()

    def published(self) -> tuple[dict[str, Any], AttemptRecord]:
        """:meth:`to_json`, and the record every process makes of that JSON when it reads it back: see
        :func:`_published`."""
        return _published(
            self.started, self.took_ms, self.retry_in, self.response_status,
            _read_back(self.response_headers), self.body_excerpt, self.error, self.number, self.outcome,
            self.destination, self._request_headers(),
        )  # fmt: skip


def reads_message(target: DeliveryTarget | None, destination: Destination) -> bool:
    """Whether the request headers shown for an attempt at ``target`` read its message (the event's
    attributes: a binary delivery; the message's id: a signed one); else they are the target's alone."""
    return (
        target is not None
        and destination is not Destination.DEAD_LETTER
        and (target.content_mode is ContentMode.BINARY or target.signing_secret is not None)
    )


def published_attempt(
    attempt: Attempt, target: DeliveryTarget | None, message: MessageRecord | None
) -> tuple[dict[str, Any], AttemptRecord]:
    """``PendingAttempt(attempt, target)``, bound to ``message`` (its record in this process's view; None:
    not there, or not read: :func:`reads_message`), then :meth:`~PendingAttempt.published`, without
    making the PendingAttempt: what the JetStream message log publishes of an attempt."""
    destination = attempt.destination
    if message is None or not reads_message(target, destination):
        request_headers = _target_request_headers(target, destination)
    else:
        request_headers = _request_headers(
            target, destination, message.event, message.known_id, message.source, attempt.event_id
        )
    headers = attempt.response_headers
    return _published(
        attempt.time, attempt.latency_ms, attempt.retry_in, attempt.status_code,
        _bounded_items(headers.items(), len(headers)) if headers else _NO_HEADERS, attempt.body_excerpt,
        attempt.error, attempt.attempt, attempt.outcome, destination, request_headers,
    )  # fmt: skip


def _request_headers(
    target: DeliveryTarget | None,
    destination: Destination,
    event: CloudEvent | None,
    message_id: str | None,
    source: str | None,
    event_id: str,
) -> dict[str, str]:
    """The request headers of an attempt at ``target``, its message's event, id and source (None: not
    known; the id, if not derived yet, is derived from the source)."""
    # Without its message (JetStream: published, not yet read back) the CloudEvents headers of a
    # binary delivery are left out, never the redaction.
    if target is not None:
        try:
            webhook_id = message_id
            if webhook_id is None:  # the message's id: its source and event id hashed
                webhook_id = "" if source is None else webhook_message_id(source, event_id)
            return redacted_request_headers(target, event, destination, webhook_id)
        except Exception:  # built when read: a reader gets the attempt, not an error
            log.exception("rebuilding the request headers of an attempt failed")
    return {}


def _target_request_headers(target: DeliveryTarget | None, destination: Destination) -> dict[str, str]:
    """:func:`_request_headers` without the message: the target's alone, made once per target and
    destination (shared: never change the dict returned)."""
    if target is None:
        return {}
    cached = _TARGET_HEADERS.get((target.key, destination))
    if cached is not None and cached[0] is target:  # (a subscription's new target replaces the old one)
        return cached[1]
    headers = _request_headers(target, destination, None, None, None, "")
    if headers:  # (never empty when made: empty when making them failed, logged each time as before)
        if len(_TARGET_HEADERS) >= _TARGETS_KEPT:
            _TARGET_HEADERS.clear()
        _TARGET_HEADERS[(target.key, destination)] = (target, headers)
    return headers


# Request headers of attempts that do not read their message, by subscription and destination, with the
# target they were made for (one per subscription: the one its attempts are made for).
_TARGET_HEADERS: dict[tuple[ResourceKey, Destination], tuple[DeliveryTarget, dict[str, str]]] = {}
_TARGETS_KEPT = 4096


def _published(
    started: float,
    took_ms: float,
    retry_in: float | None,
    status: int | None,
    response_headers: dict[str, str],
    excerpt: bytes,
    error: str | None,
    number: int,
    outcome: str,
    destination: Destination,
    request_headers: dict[str, str],
) -> tuple[dict[str, Any], AttemptRecord]:
    """The JSON of the record of an attempt of these values (``AttemptRecord.to_json``: same keys, same
    order, same values), and the record every process makes of that JSON when it reads it back
    (``AttemptRecord.from_json(orjson.loads(orjson.dumps(...)))``: the time to the millisecond, the
    numbers rounded), both at once: the message log publishes the JSON, and applies the record when it
    reads its own message back (no record to build first, no JSON to read). The JSON's dicts are not
    copied (it is serialized, never changed); the record's are its own."""
    time_text = rfc3339_of(_FROM_TIMESTAMP(started, _UTC))  # (utc(started))
    latency = round(took_ms, 3)
    if retry_in is not None:
        retry_in = round(retry_in, 3)
    excerpt_text = excerpt.decode("utf-8", "replace") if excerpt else ""
    destination_text = destination._value_
    body = {
        "time": time_text,
        "number": number,
        "destination": destination_text,
        "latencyMs": latency,
        "responseStatus": status,
        "responseHeaders": response_headers,
        "responseBodyExcerpt": excerpt_text,
        "error": error,
        "outcome": outcome,
        "retryInSeconds": retry_in,
        "requestHeaders": request_headers,
    }
    # What AttemptRecord.from_json makes of it, field by field (JSON writes a NaN or an infinity as null:
    # neither is between the infinities).
    return body, AttemptRecord(
        time=_FROM_ISOFORMAT(time_text),
        latency_ms=float(latency or 0.0) if -_INFINITY < latency < _INFINITY else 0.0,
        response_status=status,
        response_headers=dict(response_headers),
        response_body_excerpt=excerpt_text,
        error=error,
        request_headers=dict(request_headers),
        number=int(number or 1),
        outcome=str(outcome or ""),
        destination=str(destination_text or "subscriber"),
        retry_in=retry_in if retry_in is None or -_INFINITY < retry_in < _INFINITY else None,
    )


_FROM_ISOFORMAT = datetime.datetime.fromisoformat
_FROM_TIMESTAMP = datetime.datetime.fromtimestamp
_UTC = datetime.UTC
_INFINITY = math.inf


_NO_HEADERS: dict[str, str] = {}


def _attempt_record(
    started: float,
    took_ms: float,
    retry_in: float | None,
    status: int | None,
    kept_headers: dict[str, str] | tuple[tuple[str, str], ...],
    excerpt: bytes,
    error: str | None,
    number: int,
    outcome: str,
    destination: Destination,
    request_headers: dict[str, str],
) -> AttemptRecord:
    """The record of an attempt kept as its values (a :class:`PendingAttempt`, or a store's tuple)."""
    return AttemptRecord(
        time=utc(started),
        latency_ms=took_ms,
        response_status=status,
        response_headers=_read_back(kept_headers),
        response_body_excerpt=excerpt.decode("utf-8", "replace") if excerpt else "",
        error=error,
        request_headers=request_headers,
        number=number,
        outcome=outcome,
        destination=destination._value_,
        retry_in=retry_in,
    )


def _attempt_of_values(message: MessageRecord, values: AttemptValues) -> AttemptRecord:
    """The record of an attempt the memory store keeps as values (:meth:`MessageRecorder.on_attempt`):
    what a :class:`PendingAttempt` bound to ``message`` gives. ``values``: this function, then started,
    took_ms, retry_in, status, kept response headers, body excerpt, error, number, outcome, destination,
    the subscription's target and the message's event when the attempt was made."""
    target, event, destination = values[11], values[12], values[10]
    request_headers: dict[str, str] = {}
    if target is not None:
        try:
            request_headers = redacted_request_headers(target, event, destination, message.id)
        except Exception:  # built when read: a reader gets the attempt, not an error
            log.exception("rebuilding the request headers of an attempt failed")
    return _attempt_record(
        values[1], values[2], values[3], values[4], values[5], values[6], values[7], values[8], values[9],
        destination, request_headers,
    )  # fmt: skip


class MessageRecorder:
    """A :class:`DeliveryObserver` that records into ``store``, then passes on to ``inner``."""

    def __init__(
        self,
        store: MemoryMessageStore,
        target_of: Callable[[ResourceKey], DeliveryTarget | None],
        inner: DeliveryObserver | None = None,
        writer: MessageWriter | None = None,
    ) -> None:
        self.store = store
        self.writer = writer or store
        self._target_of = target_of
        self._inner = inner

    @property
    def writer(self) -> MessageWriter:
        """Where changes go: the store itself (memory), or the JetStream log that feeds every process's
        store (set when the log starts)."""
        return self._writer

    @writer.setter
    def writer(self, writer: MessageWriter) -> None:
        self._writer = writer
        # The memory store is written directly: an attempt joins its record as one tuple of values.
        self._direct = writer is self.store
        # A writer that takes an attempt as it was made (the JetStream log: attempt_made) gets it so.
        self._attempt_made: Callable[[ResourceKey, Attempt, DeliveryTarget | None], None] | None = getattr(
            writer, "attempt_made", None
        )

    def record_stored(
        self, plan: Sequence[tuple[ResourceKey, CloudEvent]], *, now: float
    ) -> list[tuple[ResourceKey, str]]:
        """Every delivery of a request becomes a pending record (cheap: no encoding, no hash: the message
        id is derived when read), before the bus stores it (a durable bus may deliver before its store
        call returns). Returns (key, message key) of the records that are new: :meth:`discard` them when
        the bus refuses the request."""
        created: list[tuple[ResourceKey, str]] = []
        record = self._writer.record
        pending = MessageRecord.pending
        for key, event in plan:
            attributes = event.attributes
            # CloudEvent's id, source and type properties, inlined (three calls less per delivery).
            event_id, source, event_type = attributes["id"], attributes["source"], attributes["type"]
            if type(event_id) is not str:
                event_id = str(event_id)
            if type(source) is not str:
                source = str(source)
            if type(event_type) is not str:
                event_type = str(event_type)
            subject = attributes.get("subject")
            # time and received stay a text and a float until read (MessageRecord.pending), the id a
            # source and an event id
            entry = pending(
                None,
                key.namespace,
                key.name,
                event_id,
                source,
                event_type,
                None if subject is None else str(subject),
                attributes.get("time"),
                now,
            )
            if record(key, entry, event):
                created.append((key, f"{source}\0{event_id}"))  # message_key(source, event_id)
        return created

    def discard(self, created: Sequence[tuple[ResourceKey, str]]) -> None:
        """The bus refused the request: its new records never happened."""
        for key, message in created:
            self.writer.discard_key(key, message)

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        try:
            if self._direct:
                # The memory store: what its attempt() does with a bound PendingAttempt, with one object
                # per attempt instead of an object and its binding: the attempt's values in one tuple
                # (with the event its record holds now), read back by _attempt_of_values.
                record = self.store.find_event(target_key, attempt.event_id)
                if record is not None:
                    headers = attempt.response_headers
                    started, took_ms = attempt.time, attempt.latency_ms
                    retry_in, destination = attempt.retry_in, attempt.destination
                    record.add_attempt(
                        (
                            _attempt_of_values, started, took_ms, retry_in, attempt.status_code,
                            _kept_headers(headers) if headers else _NO_HEADERS, attempt.body_excerpt,
                            attempt.error, attempt.attempt, attempt.outcome, destination,
                            self._target_of(target_key), record.event,
                        ),
                        MAX_ATTEMPTS_KEPT,
                    )  # fmt: skip
                    if destination is Destination.SUBSCRIBER:
                        if retry_in is not None:
                            record.status = MessageStatus.RETRYING
                            record.next_attempt = utc(started) + datetime.timedelta(
                                seconds=took_ms / 1000 + retry_in
                            )
                        else:
                            record.next_attempt = None
            elif self._attempt_made is not None:  # the JetStream log: the PendingAttempt below, not made
                self._attempt_made(target_key, attempt, self._target_of(target_key))
            else:
                entry = PendingAttempt(attempt, self._target_of(target_key))
                subscriber = attempt.destination is Destination.SUBSCRIBER
                self._writer.attempt(target_key, attempt.event_id, entry, subscriber=subscriber)
        except Exception:  # the log must never break delivery
            log.exception("recording an attempt for %s failed", target_key)
        if self._inner is not None:
            self._inner.on_attempt(target_key, attempt)

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        try:
            if event_id:
                self._writer.outcome(target_key, event_id, _OUTCOMES[outcome._value_], reason)
        except Exception:
            log.exception("recording an outcome for %s failed", target_key)
        if self._inner is not None:
            self._inner.on_outcome(target_key, event_id, outcome, reason)

    def describe(self) -> dict[str, Any]:
        return {"durable": self.store.durable, "maxMessages": self.store.max_messages}
