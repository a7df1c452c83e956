"""Message records: what happened to one event for one subscription (pure data, no I/O)."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from openconnector.refusal import Refusal

__all__ = [
    "AttemptRecord",
    "MessagePage",
    "MessageRecord",
    "MessageStatus",
    "SubscriptionSummary",
    "decode_cursor",
    "encode_cursor",
    "rfc3339",
]


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead-lettered"
    DROPPED = "dropped"


def rfc3339(moment: datetime.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


@dataclass(slots=True)
class MessageRecord:
    """One event for one subscription. ``id`` is unique within the subscription (``msg_`` + hash of
    the event's source and id, the Standard Webhooks ``webhook-id``); ``sequence`` orders the records
    of a subscription (cursors are built from it)."""

    id: str
    namespace: str
    subscription: str
    event_id: str
    source: str
    type: str
    subject: str | None
    time: datetime.datetime
    status: MessageStatus
    attempts: list[AttemptRecord] = field(default_factory=list)
    next_attempt: datetime.datetime | None = None
    sequence: int = 0
    received: datetime.datetime | None = None
    reason: str | None = None

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
            "attemptCount": len(self.attempts),
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


def encode_cursor(kind: str, sequence: int) -> str:
    """An opaque cursor: clients pass it back unchanged, never build one."""
    raw = json.dumps({"k": kind, "s": sequence}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, kind: str) -> int:
    """The sequence in ``cursor``; a cursor that is not one of ours is refused with 400."""
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or data.get("k") != kind:
            raise ValueError("wrong kind")
        sequence = data["s"]
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise ValueError("bad sequence")
        return sequence
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        raise Refusal(400, "invalid-cursor", "cursor: not a cursor this API handed out") from None
