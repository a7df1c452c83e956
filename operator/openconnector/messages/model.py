"""Message records: what happened to one event for one subscription (pure data, no I/O)."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from openconnector.consumers.standard_webhooks import webhook_message_id
from openconnector.refusal import Refusal

__all__ = [
    "AttemptRecord",
    "AttemptValues",
    "LazyAttempt",
    "MessagePage",
    "MessageRecord",
    "MessageStatus",
    "SubscriptionSummary",
    "decode_cursor",
    "encode_cursor",
    "isoformat",
    "rfc3339",
    "rfc3339_of",
]


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead-lettered"
    DROPPED = "dropped"


def rfc3339(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else rfc3339_of(moment)


def rfc3339_of(moment: datetime.datetime) -> str:
    """:func:`rfc3339` of a datetime: UTC, to the millisecond (truncated), ``Z``."""
    if moment.tzinfo is _UTC and type(moment) is _DATETIME:  # (the common case) formatted once a second
        return f"{_whole_second(moment)}.{moment.microsecond // 1000:03d}Z"
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def isoformat(moment: datetime.datetime) -> str:
    """``moment.isoformat()``; for a UTC datetime (the common case) its date and time of day are
    formatted once a second."""
    if moment.tzinfo is _UTC and type(moment) is _DATETIME:
        microsecond = moment.microsecond
        if microsecond:
            return f"{_whole_second(moment)}.{microsecond:06d}+00:00"
        return f"{_whole_second(moment)}+00:00"
    return moment.isoformat()


_UTC = datetime.UTC
_DATETIME = datetime.datetime
_ONE_SECOND = datetime.timedelta(seconds=1)
_LAST = _DATETIME.max.replace(tzinfo=_UTC)
_NEVER = (_LAST, _LAST, "")
# The last two whole seconds formatted (an event's own time and when it was received may differ): each
# its start, its end (excluded), and "YYYY-MM-DDTHH:MM:SS". An entry is checked before it is used, so
# whatever entry a reader finds, what it returns is right.
_last_seconds = [_NEVER, _NEVER]


def _whole_second(moment: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of the UTC datetime ``moment``: what isoformat writes before the
    fraction and the offset."""
    seconds = _last_seconds
    start, end, text = seconds[0]
    if start <= moment < end:
        return text
    start, end, text = seconds[1]
    if start <= moment < end:
        return text
    start = moment.replace(microsecond=0)
    text = start.isoformat()[:19]
    if start < _LAST - _ONE_SECOND:  # (the last second there is has no end to keep)
        seconds[1] = seconds[0]
        seconds[0] = (start, start + _ONE_SECOND, text)
    return text


def utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


@dataclass(slots=True)
class AttemptRecord:
    """One HTTP request towards the subscriber (or its dead-letter sink). ``request_headers`` are
    redacted: credentials, signatures and Secret-sourced headers read ``[redacted]``."""

    time: datetime.datetime
    latency_ms: float
    response_status: int | None
    response_headers: Mapping[str, str]
    response_body_excerpt: str
    error: str | None
    request_headers: Mapping[str, str]
    number: int = 1
    outcome: str = ""
    destination: str = "subscriber"
    retry_in: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": rfc3339(self.time),
            "number": self.number,
            "destination": self.destination,
            "latencyMs": round(self.latency_ms, 3),
            "responseStatus": self.response_status,
            "responseHeaders": dict(self.response_headers),
            "responseBodyExcerpt": self.response_body_excerpt,
            "error": self.error,
            "outcome": self.outcome,
            "retryInSeconds": None if self.retry_in is None else round(self.retry_in, 3),
            "requestHeaders": dict(self.request_headers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptRecord:
        return cls(
            time=datetime.datetime.fromisoformat(str(data["time"])),
            latency_ms=float(data.get("latencyMs") or 0.0),
            response_status=data.get("responseStatus"),
            response_headers=dict(data.get("responseHeaders") or {}),
            response_body_excerpt=str(data.get("responseBodyExcerpt") or ""),
            error=data.get("error"),
            request_headers=dict(data.get("requestHeaders") or {}),
            number=int(data.get("number") or 1),
            outcome=str(data.get("outcome") or ""),
            destination=str(data.get("destination") or "subscriber"),
            retry_in=data.get("retryInSeconds"),
        )


class LazyAttempt(Protocol):
    """An attempt kept as the few values it was made from (cheap on the delivery path): its
    :class:`AttemptRecord` is built when the log is read (:meth:`materialize`, the same record every time)."""

    @property
    def time(self) -> datetime.datetime: ...

    @property
    def latency_ms(self) -> float: ...

    @property
    def retry_in(self) -> float | None: ...

    def bind(self, event: Any, message: MessageRecord) -> None:
        """The message it belongs to: its stored event and record (the request headers shown need the
        event and the message's id, read when the attempt is). Keeps no reference to the record."""

    def materialize(self) -> AttemptRecord: ...

    def to_json(self) -> dict[str, Any]: ...


# An attempt kept by a store as the values it was made from, in one tuple (one object, no bind: the
# record holding it has the event and the id): its first item is a function that builds the
# AttemptRecord from the record and the tuple when the log is read (see
# openconnector.messages.recorder.MessageRecorder.on_attempt). Only the memory store holds these.
AttemptValues = tuple[Any, ...]


def _event_time(text: object, received: datetime.datetime) -> datetime.datetime:
    """The event's ``time`` attribute, or when it was received (no time, or one that does not parse)."""
    if text is None:
        return received
    try:
        return datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return received


class MessageRecord:
    """One event for one subscription. ``id`` is unique within the subscription (``msg_`` + hash of
    the event's source and id, the Standard Webhooks ``webhook-id``); ``sequence`` orders the records
    of a subscription (cursors are built from it).

    Records made on the delivery path (:meth:`pending`) keep the event's ``time`` text, the receive
    timestamp and their attempts as given; ``time``, ``received`` and ``attempts`` turn them into
    datetimes and :class:`AttemptRecord` when first read, and ``id`` (a SHA-256) is derived from the
    source and event id when first read.

    A record in a store is also the stored message (one object per delivery, not two): ``event`` is
    the CloudEvent kept for resend, replay and pull, ``received_at`` the store's clock when it was
    added (the age bound), and ``record`` is the record itself."""

    __slots__ = (
        "_attempts",
        "_id",
        "_received",
        "_received_at",
        "_time",
        "_time_text",
        "event",
        "event_id",
        "namespace",
        "next_attempt",
        "reason",
        "received_at",
        "sequence",
        "source",
        "status",
        "subject",
        "subscription",
        "type",
    )

    def __init__(
        self,
        id: str,
        namespace: str,
        subscription: str,
        event_id: str,
        source: str,
        type: str,
        subject: str | None,
        time: datetime.datetime,
        status: MessageStatus,
        attempts: list[AttemptRecord] | None = None,
        next_attempt: datetime.datetime | None = None,
        sequence: int = 0,
        received: datetime.datetime | None = None,
        reason: str | None = None,
    ) -> None:
        self._id: str | None = id
        self.namespace = namespace
        self.subscription = subscription
        self.event_id = event_id
        self.source = source
        self.type = type
        self.subject = subject
        self._time: datetime.datetime | None = time
        self._time_text: object = None
        self.status = status
        self._attempts: list[AttemptRecord | LazyAttempt | AttemptValues] = (
            [] if attempts is None else attempts  # type: ignore[assignment]
        )
        self.next_attempt = next_attempt
        self.sequence = sequence
        self._received = received
        self._received_at: float | None = None
        self.reason = reason
        self.event: Any = None
        self.received_at = 0.0

    @classmethod
    def pending(
        cls,
        id: str | None,
        namespace: str,
        subscription: str,
        event_id: str,
        source: str,
        type: str,
        subject: str | None,
        time_text: object,
        received_at: float,
    ) -> MessageRecord:
        """A new pending record of a stored delivery: ``time_text`` is the event's ``time`` attribute
        (None: none), ``received_at`` the Unix time it was received; ``id`` None: the ``webhook-id`` of
        ``source`` and ``event_id``, derived when first read."""
        record = cls.__new__(cls)
        record._id = id
        record.namespace = namespace
        record.subscription = subscription
        record.event_id = event_id
        record.source = source
        record.type = type
        record.subject = subject
        record._time = None
        record._time_text = time_text
        record.status = MessageStatus.PENDING
        record._attempts = []
        record.next_attempt = None
        record.sequence = 0
        record._received = None
        record._received_at = received_at
        record.reason = None
        record.event = None
        record.received_at = 0.0
        return record

    @property
    def record(self) -> MessageRecord:
        """The record of this stored message: itself (a store keeps the record as its stored message)."""
        return self

    @property
    def id(self) -> str:
        found = self._id
        if found is None:
            found = self._id = webhook_message_id(self.source, self.event_id)
        return found

    @id.setter
    def id(self, value: str) -> None:
        self._id = value

    @property
    def known_id(self) -> str | None:
        """``id`` if it was given or derived already, else None (derive it from source and event id)."""
        return self._id

    @property
    def received(self) -> datetime.datetime | None:
        received = self._received
        if received is None and self._received_at is not None:
            received = self._received = utc(self._received_at)
        return received

    @received.setter
    def received(self, value: datetime.datetime | None) -> None:
        self._received, self._received_at = value, None

    @property
    def time(self) -> datetime.datetime:
        moment = self._time
        if moment is None:
            received = self.received
            assert received is not None  # a pending record always has one
            moment = self._time = _event_time(self._time_text, received)
        return moment

    @time.setter
    def time(self, value: datetime.datetime) -> None:
        self._time, self._time_text = value, None

    @property
    def attempts(self) -> list[AttemptRecord]:
        """The attempts kept, oldest first (the first one and the newest ones)."""
        attempts = self._attempts
        for index, entry in enumerate(attempts):
            kind = type(entry)
            if kind is not AttemptRecord:
                if kind is tuple:  # values: the first one builds the record (AttemptValues)
                    attempts[index] = entry[0](self, entry)  # type: ignore[index]
                else:
                    attempts[index] = entry.materialize()  # type: ignore[union-attr]
        return attempts  # type: ignore[return-value]

    @attempts.setter
    def attempts(self, value: list[AttemptRecord]) -> None:
        self._attempts = value  # type: ignore[assignment]

    @property
    def attempt_count(self) -> int:
        return len(self._attempts)

    def add_attempt(self, entry: AttemptRecord | LazyAttempt | AttemptValues, keep: int) -> None:
        """Append ``entry``; beyond ``keep`` attempts the second oldest goes (the first one stays)."""
        attempts = self._attempts
        if len(attempts) >= keep:
            del attempts[1]
        attempts.append(entry)

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.id, self.namespace, self.subscription, self.event_id, self.source, self.type,
            self.subject, self.time, self.status, self.attempts, self.next_attempt, self.sequence,
            self.received, self.reason,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, MessageRecord)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"MessageRecord(id={self.id!r}, namespace={self.namespace!r}, "
            f"subscription={self.subscription!r}, event_id={self.event_id!r}, status={self.status!r}, "
            f"sequence={self.sequence!r})"
        )

    def to_json(self, *, with_attempts: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "namespace": self.namespace,
            "subscription": self.subscription,
            "eventId": self.event_id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": rfc3339(self.time),
            "received": rfc3339(self.received),
            "status": self.status.value,
            "reason": self.reason,
            "attemptCount": len(self._attempts),
            "nextAttempt": rfc3339(self.next_attempt),
        }
        if with_attempts:
            body["attempts"] = [attempt.to_json() for attempt in self.attempts]
        return body


@dataclass(slots=True)
class MessagePage:
    items: list[MessageRecord]
    next_cursor: str | None


@dataclass(slots=True)
class SubscriptionSummary:
    namespace: str
    name: str
    ready: bool
    healthy: str  # "True" | "False" | "Unknown"
    phase: str | None
    reason: str | None
    style: str
    counters: dict[str, Any]
    stored_messages: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "healthy": self.healthy,
            "phase": self.phase,
            "reason": self.reason,
            "style": self.style,
            "counters": self.counters,
            "storedMessages": self.stored_messages,
        }


#: The longest cursor taken: a pull cursor names its subscription (a namespace of up to 63 and a name of
#: up to 253 characters), in base64.
_MAX_CURSOR = 1024


def encode_cursor(kind: str, sequence: int, subscription: str | None = None) -> str:
    """An opaque cursor: clients pass it back unchanged, never build one. ``subscription``
    (``namespace/name``) ties it to one subscription: :func:`decode_cursor` refuses it for another."""
    fields: dict[str, Any] = {"k": kind, "s": sequence}
    if subscription is not None:
        fields["p"] = subscription
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, kind: str, subscription: str | None = None) -> int:
    """The sequence in ``cursor``; a cursor that is not one of ours is refused with 400, and so is,
    when ``subscription`` is given, one handed out for another subscription (or naming none)."""
    try:
        if len(cursor) > _MAX_CURSOR:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or data.get("k") != kind:
            raise ValueError("wrong kind")
        if subscription is not None and data.get("p") != subscription:
            raise ValueError("another subscription's")
        sequence = data["s"]
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise ValueError("bad sequence")
        return sequence
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        raise Refusal(400, "invalid-cursor", "cursor: not a cursor this API handed out") from None
