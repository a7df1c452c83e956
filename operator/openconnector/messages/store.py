"""The bounded in-memory message store (not durable: it lives and dies with the process).

Per subscription the records sit in a list ordered by sequence, so a page after a cursor is found by
bisection (flat per page however many records are kept), and in a dict by event id: the newest record
of each event id (attempts carry only the event id). A record is one source and event id (a sender's
retry finds its record): should an event id come from a second source, the older record moves to a
dict by message key (source NUL event id, :func:`~openconnector.consumers.standard_webhooks.message_key`),
empty in the common case. The message id, a hash of the message key, is derived when read: the index
by id is built on the first look-up by id, for the records added since the last one. Bounds, per
subscription: ``max_messages`` records (the oldest go first) and ``max_age`` seconds since a record was
received. The stored event (needed for resend, replay and pull) is kept with its record.
"""

from __future__ import annotations

import bisect
import datetime
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from openconnector.api.keys import ResourceKey
from openconnector.messages.model import AttemptRecord, LazyAttempt, MessageRecord, MessageStatus

MAX_ATTEMPTS_KEPT = 50  # per message; the first and the newest are what anyone reads

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_MESSAGES",
    "MAX_ATTEMPTS_KEPT",
    "MemoryMessageStore",
    "StoredMessage",
]

DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
_COMPACT_SLACK = 256  # drop removed entries from the front in small batches: `del list[:n]` is O(n)


# A stored message is its record: the record keeps the event (resend, replay, pull) and when it was
# added (`received_at`, the age bound); its `record` is itself. One object per delivery, not two.
StoredMessage = MessageRecord


def _message_key(record: MessageRecord) -> str:
    return f"{record.source}\0{record.event_id}"  # standard_webhooks.message_key


@dataclass(slots=True)
class _Log:
    size: int = 0  # records kept
    by_event: dict[str, StoredMessage] = field(default_factory=dict)  # the newest record of each event id
    # By message key: the records kept whose event id has a newer record, from another source.
    shadowed: dict[str, StoredMessage] = field(default_factory=dict)
    # The records in order of sequence, and their sequences (bisected for pages). A removed record's slot
    # is None (nothing of it is kept) until the lists are compacted: below `head` every slot is None,
    # the one at `head` is not (the oldest is found without a scan); `holes` counts the None after it.
    entries: list[StoredMessage | None] = field(default_factory=list)
    sequences: array[int] = field(default_factory=lambda: array("q"))
    head: int = 0
    holes: int = 0
    # Message id -> record, for the records up to sequence `indexed` (built when looked up by id).
    by_id: dict[str, StoredMessage] = field(default_factory=dict)
    indexed: int = 0
    pull_acked: int = 0  # pull subscriptions: every sequence at or below it is acknowledged
    newest: int = 0  # the highest sequence ever kept here (removing records does not lower it)


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

    # ------------------------------------------------------------------------------- writing

    def add(self, key: ResourceKey, record: MessageRecord, event: Any) -> StoredMessage:
        """Store a new record (or return the existing one of the same source and event id: a sender's
        retry)."""
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        newest = log.by_event.get(record.event_id)
        if newest is not None and newest.source == record.source:
            return newest
        existing = log.shadowed.get(_message_key(record)) if log.shadowed else None
        if existing is not None:
            return existing
        return self._append(log, newest, record, event)

    def _append(
        self, log: _Log, newest: StoredMessage | None, record: MessageRecord, event: Any
    ) -> StoredMessage:
        """Keep ``record``, a new source and event id; ``newest`` is the newest record of its event id."""
        self._sequence = sequence = self._sequence + 1
        record.sequence = sequence
        record.event = event
        record.received_at = now = self._clock()
        log.newest = sequence
        if newest is not None:  # the event id from a second source: the older record stays findable
            log.shadowed[_message_key(newest)] = newest
        by_event = log.by_event
        by_event[record.event_id] = record
        log.size = size = log.size + 1
        entries = log.entries
        entries.append(record)
        log.sequences.append(sequence)
        head = log.head
        oldest = entries[head]  # (there is one kept: this one at least)
        assert oldest is not None
        cutoff = now - self.max_age
        if size > self.max_messages or oldest.received_at < cutoff:
            # A full log drops its oldest record on every add: done here when it is the plain case that
            # _remove would handle first (the newest of its event id, not indexed by id yet, the next
            # slot kept and young enough, no compaction due), else by _evict. Same result either way.
            following = head + 1
            if (
                size == self.max_messages + 1
                and following <= _COMPACT_SLACK
                and (successor := entries[following]) is not None  # (the new record at least follows)
                and successor.received_at >= cutoff
                and oldest.sequence > log.indexed
                and by_event.get(oldest.event_id) is oldest
            ):
                del by_event[oldest.event_id]
                entries[head] = None
                log.head = following
                log.size = size - 1
            else:
                self._evict(log, now)
        return record

    # --------------------------------------------------- changes (the MessageWriter of the memory bus)

    def record(
        self, key: ResourceKey, record: MessageRecord, event: Any, *, sequence: int | None = None
    ) -> bool:
        """A delivery was stored: a pending record (True), or the existing one pending again (False: a
        sender's retry of the same event). ``sequence`` orders it (the JetStream log's sequence)."""
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        newest = log.by_event.get(record.event_id)
        if newest is not None and newest.source == record.source:
            existing: MessageRecord | None = newest
        else:
            existing = log.shadowed.get(_message_key(record)) if log.shadowed else None
        if existing is not None:
            existing.status = MessageStatus.PENDING
            existing.event = event
            return False
        if sequence is not None and sequence - 1 > self._sequence:
            self._sequence = sequence - 1
        self._append(log, newest, record, event)
        return True

    def attempt(
        self, key: ResourceKey, event_id: str, entry: AttemptRecord | LazyAttempt, *, subscriber: bool
    ) -> None:
        log = self._logs.get(key)
        record = None if log is None else log.by_event.get(event_id)
        if record is None:
            return
        if type(entry) is not AttemptRecord:
            entry.bind(record.event, record)  # type: ignore[union-attr]
        record.add_attempt(entry, MAX_ATTEMPTS_KEPT)  # the first attempt and the newest ones
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
        log = self._logs.get(key)
        record = None if log is None or not event_id else log.by_event.get(event_id)
        if record is not None:
            record.status = status
            record.reason = reason
            record.next_attempt = None

    def mark(self, key: ResourceKey, message_id: str, status: MessageStatus, reason: str | None) -> None:
        """Resend and replay: the message is pending again."""
        stored = self.get(key, message_id)
        if stored is not None:
            stored.status = status
            stored.reason = reason

    def discard_id(self, key: ResourceKey, message_id: str) -> None:
        stored = self.get(key, message_id)
        if stored is not None:
            self.discard(key, stored)

    def discard_key(self, key: ResourceKey, message_key: str) -> None:
        """Remove the record of ``message_key`` (source NUL event id): its request was refused."""
        log = self._logs.get(key)
        if log is None:
            return
        stored = log.shadowed.get(message_key) if log.shadowed else None
        if stored is None:
            # The event id: what follows the last NUL (a CloudEvents String holds none); checked.
            stored = log.by_event.get(message_key[message_key.rfind("\0") + 1 :])
            if stored is None or _message_key(stored) != message_key:
                return
        self._remove(log, stored)

    def holds(self, key: ResourceKey, record: MessageRecord) -> bool:
        """Whether ``key`` keeps a record of ``record``'s source and event id (``get(key, record.id)``
        finds one: the id is their hash), found without hashing ids."""
        log = self._logs.get(key)
        if log is None:
            return False
        newest = log.by_event.get(record.event_id)  # (_find, inlined: once per record on JetStream)
        if newest is not None and newest.source == record.source:
            return True
        return bool(log.shadowed) and _message_key(record) in log.shadowed

    def find_event(self, key: ResourceKey, event_id: str) -> StoredMessage | None:
        """The newest record of ``event_id`` in ``key`` (attempts carry only the event id)."""
        log = self._logs.get(key)
        return None if log is None else log.by_event.get(event_id)

    def _evict(self, log: _Log, now: float | None = None) -> None:
        """Remove the oldest records beyond the count bound and those older than the age bound."""
        cutoff = (self._clock() if now is None else now) - self.max_age
        max_messages, entries = self.max_messages, log.entries
        while log.size:
            oldest = entries[log.head]
            assert oldest is not None  # (head is at the oldest kept)
            if log.size <= max_messages and oldest.received_at >= cutoff:
                break
            self._remove(log, oldest)  # moves head past it

    def _remove(self, log: _Log, record: MessageRecord) -> None:
        stored = record
        log.size -= 1
        by_event = log.by_event
        if by_event.get(record.event_id) is stored:
            del by_event[record.event_id]
        elif log.shadowed:
            log.shadowed.pop(_message_key(record), None)
        if record.sequence <= log.indexed:
            by_id = log.by_id
            if by_id.get(record.id) is stored:
                del by_id[record.id]
        entries, sequences, head = log.entries, log.sequences, log.head
        if entries[head] is stored:  # the oldest: head moves to the next one kept
            entries[head] = None
            end = len(entries)
            head += 1
            while head < end and entries[head] is None:
                head += 1
                log.holes -= 1
            if head == end:  # none kept
                entries.clear()
                del sequences[:]
                head = log.holes = 0
            elif head > _COMPACT_SLACK:  # in batches: `del list[:n]` is O(length)
                del entries[:head]
                del sequences[:head]
                head = 0
            log.head = head
        elif entries[-1] is stored:  # the newest (a refused request's record, mostly)
            entries.pop()
            sequences.pop()
            while entries[-1] is None:  # (stops at head)
                entries.pop()
                sequences.pop()
                log.holes -= 1
        else:  # one in between: its slot is emptied, the lists rebuilt once most slots are empty
            index = bisect.bisect_left(sequences, record.sequence, head)
            if entries[index] is stored:
                entries[index] = None
                log.holes = holes = log.holes + 1
                if holes > _COMPACT_SLACK and holes > log.size:
                    kept = [entry for entry in entries[head:] if entry is not None]
                    entries[:] = kept
                    log.sequences = array("q", [entry.sequence for entry in kept])
                    log.head = log.holes = 0

    def discard(self, key: ResourceKey, stored: StoredMessage) -> None:
        """Remove one record (its request was refused after it was recorded)."""
        log = self._logs.get(key)
        if log is not None and self._find(log, stored) is stored:
            self._remove(log, stored)

    @staticmethod
    def _find(log: _Log, record: MessageRecord) -> StoredMessage | None:
        """The record kept of ``record``'s source and event id."""
        newest = log.by_event.get(record.event_id)
        if newest is not None and newest.source == record.source:
            return newest
        return log.shadowed.get(_message_key(record)) if log.shadowed else None

    def expire(self) -> None:
        """Drop what is older than ``max_age`` (also done on every add)."""
        for log in list(self._logs.values()):
            self._evict(log)

    def forget(self, key: ResourceKey) -> None:
        """The subscription is gone: its records go with it."""
        self._logs.pop(key, None)

    # ------------------------------------------------------------------------------- reading

    def count(self, key: ResourceKey) -> int:
        log = self._logs.get(key)
        return 0 if log is None else log.size

    def get(self, key: ResourceKey, message_id: str) -> StoredMessage | None:
        log = self._logs.get(key)
        if log is None:
            return None
        by_id = log.by_id
        found = by_id.get(message_id)
        if found is None:
            sequences = log.sequences
            if sequences and sequences[-1] > log.indexed:
                # index the records added since the last look-up by id (their ids hashed now)
                for stored in log.entries[bisect.bisect_right(sequences, log.indexed) :]:
                    if stored is not None:
                        by_id[stored.id] = stored
                log.indexed = sequences[-1]
                found = by_id.get(message_id)
        return found

    def newest_first(self, key: ResourceKey, before: int | None) -> Iterator[StoredMessage]:
        """Records of ``key`` with a sequence below ``before`` (all when None), newest first."""
        log = self._logs.get(key)
        if log is None:
            return
        entries = log.entries
        index = len(entries) if before is None else bisect.bisect_left(log.sequences, before)
        while index > 0:
            index -= 1
            stored = entries[index]
            if stored is not None:
                yield stored

    def oldest_first(self, key: ResourceKey, after: int) -> Iterator[StoredMessage]:
        """Records of ``key`` with a sequence above ``after``, oldest first."""
        log = self._logs.get(key)
        if log is None:
            return
        entries = log.entries
        index = bisect.bisect_right(log.sequences, after)
        while index < len(entries):
            stored = entries[index]
            index += 1
            if stored is not None:
                yield stored

    def for_event(self, event_id: str) -> list[StoredMessage]:
        """The newest record of ``event_id`` in every subscription that has one."""
        found: list[StoredMessage] = []
        for log in self._logs.values():
            stored = log.by_event.get(event_id)
            if stored is not None:
                found.append(stored)
        return found

    # ------------------------------------------------------------------------------- pull

    def pull_position(self, key: ResourceKey) -> int:
        log = self._logs.get(key)
        return 0 if log is None else log.pull_acked

    def pull_bound(self, key: ResourceKey) -> int:
        """The highest sequence a pull of ``key`` could have handed out in a cursor: the newest record
        ever kept for it (removed or not), or its acknowledged position if that is higher."""
        log = self._logs.get(key)
        return 0 if log is None else max(log.newest, log.pull_acked)

    def acknowledge(self, key: ResourceKey, upto: int, now: datetime.datetime) -> int:
        """Pull: every pending record of ``key`` at or below sequence ``upto`` is acknowledged
        (delivered). Returns how many were newly acknowledged."""
        log = self._logs.get(key)
        if log is None or upto <= log.pull_acked:
            return 0
        acknowledged = 0
        for stored in self.oldest_first(key, log.pull_acked):
            if stored.sequence > upto:
                break
            if stored.status is MessageStatus.PENDING:
                stored.status = MessageStatus.DELIVERED
                stored.reason = f"acknowledged by a pull at {now.isoformat()}"
                acknowledged += 1
        log.pull_acked = upto
        return acknowledged
