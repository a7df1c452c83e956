"""The bounded in-memory message store (not durable: it lives and dies with the process).

Per subscription the records sit in a dict by id and in a list ordered by sequence, so a page after a
cursor is found by bisection (flat per page however many records are kept). Bounds, per subscription:
``max_messages`` records (the oldest go first) and ``max_age`` seconds since a record was received.
The stored event (needed for resend, replay and pull) is kept with its record.
"""

from __future__ import annotations

import bisect
import datetime
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from openconnector.api.keys import ResourceKey
from openconnector.messages.model import AttemptRecord, LazyAttempt, MessageRecord, MessageStatus

_MAX_ATTEMPTS_KEPT = 50  # per message; the first and the newest are what anyone reads

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MAX_MESSAGES", "MemoryMessageStore", "StoredMessage"]

DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
_COMPACT_SLACK = 256  # evict in small batches: `del list[:n]` is O(n)


@dataclass(slots=True)
class StoredMessage:
    record: MessageRecord
    event: Any  # the CloudEvent (resend, replay, pull)
    received_at: float


@dataclass(slots=True)
class _Log:
    by_id: dict[str, StoredMessage] = field(default_factory=dict)
    sequences: list[int] = field(default_factory=list)  # ascending; may hold removed ones (compacted)
    by_sequence: dict[int, StoredMessage] = field(default_factory=dict)
    # Below this index of `sequences` every entry is removed: finding the oldest never rescans them.
    head: int = 0
    pull_acked: int = 0  # pull subscriptions: every sequence at or below it is acknowledged


class MemoryMessageStore:
    """Records per subscription, bounded by count and age. ``durable`` is False: say so to users."""

    durable = False

    def __init__(
        self,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages: must be a positive integer, got {max_messages!r}")
        if not max_age > 0:
            raise ValueError(f"max_age: must be a positive number of seconds, got {max_age!r}")
        self.max_messages = max_messages
        self.max_age = max_age
        self._clock = clock
        self._logs: dict[ResourceKey, _Log] = {}
        self._sequence = 0
        self._events: dict[str, dict[ResourceKey, StoredMessage]] = {}  # event id -> key -> message

    # ------------------------------------------------------------------------------- writing

    def add(self, key: ResourceKey, record: MessageRecord, event: Any) -> StoredMessage:
        """Store a new record (or return the existing one of the same id: a sender's retry)."""
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        existing = log.by_id.get(record.id)
        if existing is not None:
            return existing
        return self._append(key, log, record, event)

    def _append(self, key: ResourceKey, log: _Log, record: MessageRecord, event: Any) -> StoredMessage:
        self._sequence = sequence = self._sequence + 1
        record.sequence = sequence
        now = self._clock()
        stored = StoredMessage(record, event, now)
        log.by_id[record.id] = stored
        log.by_sequence[sequence] = stored
        log.sequences.append(sequence)
        holders = self._events.get(record.event_id)
        if holders is None:
            self._events[record.event_id] = {key: stored}
        else:
            holders[key] = stored
        if len(log.by_id) > self.max_messages or self._oldest(log).received_at < now - self.max_age:
            self._evict(key, log)
        return stored

    # --------------------------------------------------- changes (the MessageWriter of the memory bus)

    def record(
        self, key: ResourceKey, record: MessageRecord, event: Any, *, sequence: int | None = None
    ) -> bool:
        """A delivery was stored: a pending record (True), or the existing one pending again (False: a
        sender's retry of the same event). ``sequence`` orders it (the JetStream log's sequence)."""
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        existing = log.by_id.get(record.id)
        if existing is not None:
            existing.record.status = MessageStatus.PENDING
            existing.event = event
            return False
        if sequence is not None and sequence - 1 > self._sequence:
            self._sequence = sequence - 1
        self._append(key, log, record, event)
        return True

    def attempt(
        self, key: ResourceKey, event_id: str, entry: AttemptRecord | LazyAttempt, *, subscriber: bool
    ) -> None:
        stored = self.find_event(key, event_id)
        if stored is None:
            return
        record = stored.record
        if type(entry) is not AttemptRecord:
            entry.bind(stored.event, record.id)  # type: ignore[union-attr]
        record.add_attempt(entry, _MAX_ATTEMPTS_KEPT)  # the first attempt and the newest ones
        if subscriber:
            retry_in = entry.retry_in
            if retry_in is not None:
                record.status = MessageStatus.RETRYING
                record.next_attempt = entry.time + datetime.timedelta(
                    seconds=entry.latency_ms / 1000 + retry_in
                )
            else:
                record.next_attempt = None

    def outcome(self, key: ResourceKey, event_id: str, status: MessageStatus, reason: str | None) -> None:
        stored = self.find_event(key, event_id) if event_id else None
        if stored is not None:
            stored.record.status = status
            stored.record.reason = reason
            stored.record.next_attempt = None

    def mark(self, key: ResourceKey, message_id: str, status: MessageStatus, reason: str | None) -> None:
        """Resend and replay: the message is pending again."""
        stored = self.get(key, message_id)
        if stored is not None:
            stored.record.status = status
            stored.record.reason = reason

    def discard_id(self, key: ResourceKey, message_id: str) -> None:
        stored = self.get(key, message_id)
        if stored is not None:
            self.discard(key, stored)

    def find_event(self, key: ResourceKey, event_id: str) -> StoredMessage | None:
        """The newest record of ``event_id`` in ``key`` (attempts carry only the event id)."""
        holders = self._events.get(event_id)
        return None if holders is None else holders.get(key)

    def _evict(self, key: ResourceKey, log: _Log) -> None:
        over = len(log.by_id) - self.max_messages
        cutoff = self._clock() - self.max_age
        if over <= 0 and not (log.by_id and self._oldest(log).received_at < cutoff):
            return
        while log.by_id:
            oldest = self._oldest(log)
            if len(log.by_id) <= self.max_messages and oldest.received_at >= cutoff:
                break
            self._remove(key, log, oldest)
        self._compact(log)

    def _oldest(self, log: _Log) -> StoredMessage:
        sequences, by_sequence = log.sequences, log.by_sequence
        index = log.head
        while index < len(sequences):
            stored = by_sequence.get(sequences[index])
            if stored is not None:
                log.head = index
                return stored
            index += 1
        log.head = index
        raise LookupError("empty log")

    def _remove(self, key: ResourceKey, log: _Log, stored: StoredMessage) -> None:
        record = stored.record
        del log.by_id[record.id]
        del log.by_sequence[record.sequence]
        holders = self._events.get(record.event_id)
        if holders is not None and holders.get(key) is stored:
            del holders[key]
            if not holders:
                del self._events[record.event_id]

    def _compact(self, log: _Log) -> None:
        if not log.by_sequence:
            log.sequences.clear()
            log.head = 0
            return
        self._oldest(log)  # moves `head` past the removed ones
        if log.head > _COMPACT_SLACK:
            del log.sequences[: log.head]
            log.head = 0

    def discard(self, key: ResourceKey, stored: StoredMessage) -> None:
        """Remove one record (its request was refused after it was recorded)."""
        log = self._logs.get(key)
        if log is not None and log.by_id.get(stored.record.id) is stored:
            self._remove(key, log, stored)

    def expire(self) -> None:
        """Drop what is older than ``max_age`` (also done on every add)."""
        for key, log in list(self._logs.items()):
            self._evict(key, log)

    def forget(self, key: ResourceKey) -> None:
        """The subscription is gone: its records go with it."""
        log = self._logs.pop(key, None)
        if log is None:
            return
        for stored in list(log.by_id.values()):
            self._remove(key, log, stored)

    # ------------------------------------------------------------------------------- reading

    def count(self, key: ResourceKey) -> int:
        log = self._logs.get(key)
        return 0 if log is None else len(log.by_id)

    def get(self, key: ResourceKey, message_id: str) -> StoredMessage | None:
        log = self._logs.get(key)
        return None if log is None else log.by_id.get(message_id)

    def newest_first(self, key: ResourceKey, before: int | None) -> Iterator[StoredMessage]:
        """Records of ``key`` with a sequence below ``before`` (all when None), newest first."""
        log = self._logs.get(key)
        if log is None:
            return
        sequences = log.sequences
        index = len(sequences) if before is None else bisect.bisect_left(sequences, before)
        while index > 0:
            index -= 1
            stored = log.by_sequence.get(sequences[index])
            if stored is not None:
                yield stored

    def oldest_first(self, key: ResourceKey, after: int) -> Iterator[StoredMessage]:
        """Records of ``key`` with a sequence above ``after``, oldest first."""
        log = self._logs.get(key)
        if log is None:
            return
        sequences = log.sequences
        index = bisect.bisect_right(sequences, after)
        while index < len(sequences):
            stored = log.by_sequence.get(sequences[index])
            index += 1
            if stored is not None:
                yield stored

    def for_event(self, event_id: str) -> list[StoredMessage]:
        return list((self._events.get(event_id) or {}).values())

    # ------------------------------------------------------------------------------- pull

    def pull_position(self, key: ResourceKey) -> int:
        log = self._logs.get(key)
        return 0 if log is None else log.pull_acked

    def acknowledge(self, key: ResourceKey, upto: int, now: datetime.datetime) -> int:
        """Pull: every pending record of ``key`` at or below sequence ``upto`` is acknowledged
        (delivered). Returns how many were newly acknowledged."""
        log = self._logs.get(key)
        if log is None or upto <= log.pull_acked:
            return 0
        acknowledged = 0
        for stored in self.oldest_first(key, log.pull_acked):
            if stored.record.sequence > upto:
                break
            if stored.record.status is MessageStatus.PENDING:
                stored.record.status = MessageStatus.DELIVERED
                stored.record.reason = f"acknowledged by a pull at {now.isoformat()}"
                acknowledged += 1
        log.pull_acked = upto
        return acknowledged
