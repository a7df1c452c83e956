"""A bounded log of recent delivery attempts per subscription (like Svix's attempt log).

It records what happened, never what was sent: no headers (they carry credentials and signatures), no
request body and no URL query string. ``error`` texts are composed by the engine from status codes and
exception types, with URLs redacted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from openconnector.status.timefmt import rfc3339

__all__ = ["DEFAULT_ATTEMPT_LOG_SIZE", "Attempt", "AttemptLog", "Destination"]

DEFAULT_ATTEMPT_LOG_SIZE = 100


class Destination(StrEnum):
    SUBSCRIBER = "subscriber"
    DEAD_LETTER = "deadLetter"


@dataclass(slots=True)
class Attempt:
    """One HTTP request towards a subscriber or its dead-letter sink. Treat it as immutable: the attempt
    log, the message log and the observers share it. (Not a frozen dataclass: one is made per attempt,
    and a frozen one's ``__init__`` costs more than twice as much.)"""

    request_id: str
    event_id: str
    attempt: int  # 1 for the first try of this event at this destination
    time: float  # Unix time the request started
    status_code: int | None  # None: no response (timeout, connection error)
    latency_ms: float
    error: str | None  # None on success
    outcome: str  # policy.Outcome value
    destination: Destination = Destination.SUBSCRIBER
    retry_in: float | None = None  # seconds until the next attempt, when one is scheduled
    # For the message log only (never in to_json or the durable attempt log): what the receiver answered.
    response_headers: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    body_excerpt: bytes = field(default=b"", repr=False, compare=False)

    def to_json(self) -> dict[str, object]:
        result: dict[str, object] = {
            "requestId": self.request_id,
            "eventId": self.event_id,
            "attempt": self.attempt,
            "time": rfc3339(self.time),
            "statusCode": self.status_code,
            "latencyMs": round(self.latency_ms, 3),
            "error": self.error,
            "outcome": self.outcome,
            "destination": self.destination.value,
        }
        if self.retry_in is not None:
            result["retryInSeconds"] = round(self.retry_in, 3)
        return result


class AttemptLog:
    """The last ``maxlen`` attempts, oldest first."""

    __slots__ = ("_entries", "total")

    def __init__(self, maxlen: int = DEFAULT_ATTEMPT_LOG_SIZE) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen: must be a positive integer, got {maxlen!r}")
        self._entries: deque[Attempt] = deque(maxlen=maxlen)
        self.total = 0  # attempts ever appended, including those rotated out

    def append(self, attempt: Attempt) -> None:
        self._entries.append(attempt)
        self.total += 1

    def __iter__(self) -> Iterator[Attempt]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def latest(self, count: int | None = None) -> list[Attempt]:
        """The newest ``count`` attempts (all when None), oldest first."""
        entries = list(self._entries)
        return entries if count is None else entries[-count:] if count > 0 else []

    def for_event(self, event_id: str) -> list[Attempt]:
        return [entry for entry in self._entries if entry.event_id == event_id]

    def to_json(self) -> list[dict[str, object]]:
        """JSON-ready list, oldest first."""
        return [entry.to_json() for entry in self._entries]
