"""Fills the message store: a record when a delivery is stored, attempts and outcomes through the
delivery observer seam (:class:`~openconnector.delivery.outcomes.DeliveryObserver`).

Request headers are rebuilt from the subscription's target and the event, never copied from the wire:
credentials (``auth`` headers from Secrets, dead-letter credentials) and signatures read
``[redacted]``. Response headers and body excerpts from subscribers are bounded.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent, encode_header_value
from openconnector.ce.codec import JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.outcomes import DeliveryObserver, FinalOutcome
from openconnector.delivery.signing import webhook_message_id
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.messages.model import AttemptRecord, MessageRecord, MessageStatus, utc
from openconnector.messages.store import MemoryMessageStore

__all__ = ["REDACTED", "MessageRecorder", "MessageWriter", "message_id", "redacted_request_headers"]

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
_MAX_RESPONSE_HEADERS = 50
_MAX_HEADER_VALUE = 512
_SIGNATURE_HEADERS = ("webhook-signature", "webhook-timestamp")
_OUTCOMES = {
    FinalOutcome.DELIVERED: MessageStatus.DELIVERED,
    FinalOutcome.DEAD_LETTERED: MessageStatus.DEAD_LETTERED,
    FinalOutcome.DROPPED: MessageStatus.DROPPED,
}


class MessageWriter(Protocol):
    """Changes to the message log: applied to the store at once (memory), or published to JetStream
    and applied by every process as it reads them back (:mod:`openconnector.messages.jetstream_log`)."""

    def record(
        self, key: ResourceKey, record: MessageRecord, event: Any, *, sequence: int | None = None
    ) -> bool: ...

    def attempt(self, key: ResourceKey, event_id: str, entry: AttemptRecord, *, subscriber: bool) -> None: ...

    def outcome(self, key: ResourceKey, event_id: str, status: MessageStatus, reason: str | None) -> None: ...

    def mark(self, key: ResourceKey, message_id: str, status: MessageStatus, reason: str | None) -> None: ...

    def discard_id(self, key: ResourceKey, message_id: str) -> None: ...

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
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if len(kept) >= _MAX_RESPONSE_HEADERS:
            break
        lower = name.lower()
        # A subscriber's cookies and auth challenges are nobody's business in a log.
        kept[str(name)] = (
            REDACTED if lower in ("set-cookie", "www-authenticate") else str(value)[:_MAX_HEADER_VALUE]
        )
    return kept


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
        # Where changes go: the store itself (memory), or the JetStream log that feeds every process's store.
        self.writer: MessageWriter = writer or store
        self._target_of = target_of
        self._inner = inner

    def record_stored(
        self, plan: Sequence[tuple[ResourceKey, CloudEvent]], *, now: float
    ) -> list[tuple[ResourceKey, str]]:
        """Every delivery of a request becomes a pending record (cheap: no encoding), before the bus
        stores it (a durable bus may deliver before its store call returns). Returns (key, id) of the
        records that are new: :meth:`discard` them when the bus refuses the request."""
        received = utc(now)
        created: list[tuple[ResourceKey, str]] = []
        for key, event in plan:
            namespace, name = key.namespace, key.name
            attributes = event.attributes
            when = attributes.get("time")
            try:
                moment = datetime.datetime.fromisoformat(str(when)) if when is not None else received
            except ValueError:
                moment = received
            subject = attributes.get("subject")
            record = MessageRecord(
                id=message_id(event),
                namespace=namespace,
                subscription=name,
                event_id=event.id,
                source=event.source,
                type=event.type,
                subject=None if subject is None else str(subject),
                time=moment,
                status=MessageStatus.PENDING,
                received=received,
            )
            if self.writer.record(key, record, event):
                created.append((key, record.id))
        return created

    def discard(self, created: Sequence[tuple[ResourceKey, str]]) -> None:
        """The bus refused the request: its new records never happened."""
        for key, message in created:
            self.writer.discard_id(key, message)

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        try:
            self._record_attempt(target_key, attempt)
        except Exception:  # the log must never break delivery
            log.exception("recording an attempt for %s failed", target_key)
        if self._inner is not None:
            self._inner.on_attempt(target_key, attempt)

    def _record_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        stored = self.store.find_event(target_key, attempt.event_id)
        target = self._target_of(target_key)
        # The record may live in another process's view (JetStream: it is published, not yet read back):
        # without it the CloudEvents headers of a binary delivery are left out, never the redaction.
        event = None if stored is None else stored.event
        webhook_id = "" if stored is None else stored.record.id
        request_headers = (
            {} if target is None else redacted_request_headers(target, event, attempt.destination, webhook_id)
        )
        excerpt = attempt.body_excerpt.decode("utf-8", "replace") if attempt.body_excerpt else ""
        entry = AttemptRecord(
            time=utc(attempt.time),
            latency_ms=attempt.latency_ms,
            response_status=attempt.status_code,
            response_headers=_bounded_headers(attempt.response_headers),
            response_body_excerpt=excerpt,
            error=attempt.error,
            request_headers=request_headers,
            number=attempt.attempt,
            outcome=attempt.outcome,
            destination=attempt.destination.value,
            retry_in=attempt.retry_in,
        )
        subscriber = attempt.destination is Destination.SUBSCRIBER
        self.writer.attempt(target_key, attempt.event_id, entry, subscriber=subscriber)

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        try:
            if event_id:
                self.writer.outcome(target_key, event_id, _OUTCOMES[outcome], reason)
        except Exception:
            log.exception("recording an outcome for %s failed", target_key)
        if self._inner is not None:
            self._inner.on_outcome(target_key, event_id, outcome, reason)

    def describe(self) -> dict[str, Any]:
        return {"durable": self.store.durable, "maxMessages": self.store.max_messages}
