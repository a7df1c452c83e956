"""The message log on NATS JetStream (``--bus jetstream``): durable, and the same in every process.

Every change to the log (a record stored, an attempt, an outcome, a resend, a pull acknowledgement, a
record discarded) is JSON on ``<stream>_messages.<ns>.<name>`` in the stream ``<stream>_MESSAGES`` (the
same pattern as the attempt log, ``<stream>_ATTEMPTS``). The changes are gathered for one turn of the
event loop (other changes than records wait up to 5 ms for company) and the changes of one
subscription are published together in one message (``"op": "changes"``; at most 64 records and
about 256 KB per message, a lone change is a message of its own): under load the records of many
requests and the attempts and outcomes of many deliveries share one message to store and to read
back. Every gateway process reads the whole stream back with an
ordered consumer, from the start, and applies each change to its in-memory
:class:`~openconnector.messages.store.MemoryMessageStore`: reads (pages, cursors, pulls) are served from
that view, so they are as fast as in memory, and a restarted process rebuilds the log from the stream.
A process's own messages are not parsed when read back: each starts with its writer's origin and
number (``{"origin":…,"n":…,``), and the writer applies the changes it still holds for that number
(the records with the event objects it recorded, an attempt as the record its JSON reads back as), at
that point of the stream, so its view is the one every other process builds from the JSON.
A record's sequence is the stream sequence of its message times 64 plus its index among the records
of that message (:func:`record_sequence`): it orders the records as they were recorded and is the same
in every process, so cursors work against any of them.

A request's records reach the NATS connection before its deliveries are stored: the bus writes the
deliveries of the requests stored in one loop turn at its end, right after calling this log's hand-over
(:meth:`JetStreamBus.before_publish <openconnector.delivery.jetstream.JetStreamBus.before_publish>`;
the records of those requests share it), and one connection keeps publish order, so a record is in the
stream before any attempt at it, even when the bus delivers before its store returns. (On a connection
without the bus's plain-call publish, :meth:`JetStreamMessageLog.flush`, awaited by ``Gateway.publish``,
hands them over first instead.)

Records, attempts and outcomes become visible once read back (milliseconds); resends and pull
acknowledgements are applied at once by the process that made them (read your own writes) and read
back by the others. Bounds: the view keeps ``--message-max`` per subscription and nothing older than
``--message-max-age``; the stream keeps ``--message-max-age`` and at most 8 messages per kept message per
subscription (``max_msgs_per_subject``, oldest discarded). When the bus closes, what the log still holds is
published before the connection closes. Publishing is best effort: a change made
while NATS is unreachable is logged and lost (delivery itself is unaffected). The follower first waits
until the stream takes publishes on this connection's server (a new stream's interest reaches the other
servers of a cluster a little later; a plain publish there before that is dropped unseen), and only then
counts as caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import logging
import os
import secrets
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, DiscardPolicy, RetentionPolicy, StreamConfig

from openconnector.api.keys import ResourceKey
from openconnector.ce import parse_http, to_structured
from openconnector.consumers.standard_webhooks import webhook_message_id_of_key
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.durable import subscription_key_from_path, subscription_names
from openconnector.delivery.jetstream import JetStreamBus, until_stream_takes_publishes
from openconnector.delivery.target import DeliveryTarget
from openconnector.gateway.ratelog import RateLimitedLog
from openconnector.messages.model import AttemptRecord, LazyAttempt, MessageRecord, MessageStatus, isoformat
from openconnector.messages.recorder import PendingAttempt, published_attempt, reads_message
from openconnector.messages.store import MemoryMessageStore

__all__ = ["JetStreamMessageLog"]

log = logging.getLogger(__name__)
# An outage would otherwise log a line per recorded change: one line a minute says it, with the count.
_rare = RateLimitedLog(log, interval=60.0)

_CHANGES_PER_MESSAGE = 8
# Own messages published and not read back yet, whose changes this process holds, bounded in count and
# in bytes of their JSON (a message lost in transit never comes back to claim its entry, and the follower
# may lag behind: one evicted is parsed when read, as another process's).
_HELD_MESSAGES = 4096
_HELD_BYTES = 32 * 1024 * 1024
# A record's sequence is its message's stream sequence times this, plus the record's index among the
# records of that message: ordered and the same in every process. 64 also bounds what one message
# holds: the stream's per-subject bound counts messages, not records.
RECORDS_PER_MESSAGE = 64
# A message of many changes stays well below NATS's 1 MB default max_payload.
_BYTES_PER_MESSAGE = 256 * 1024
# Seconds a change other than a record (an attempt, an outcome, ...) may wait for company before it is
# published: under load the attempts and outcomes of a few milliseconds join the next records' message
# instead of making messages of their own (records go at the end of the loop turn: requests wait).
_CHANGE_DELAY = 0.005
# Subscriptions whose subject and path a log keeps at hand (then it starts again).
_NAMES_KEPT = 8192


def record_sequence(stream_sequence: int, index: int) -> int:
    """The sequence of the ``index``-th record (from 0) of the message at ``stream_sequence``."""
    return stream_sequence * RECORDS_PER_MESSAGE + index


def own_prefix(origin: str) -> bytes:
    """How every message of the writer ``origin`` starts (its number follows): see :func:`_grouped`."""
    return b'{"origin":"' + origin.encode() + b'","n":'


def _grouped(
    batch: list[_Change], origin: str, numbers: Iterator[int] | None = None
) -> list[tuple[str, bytes, int, list[_Change]]]:
    """The messages to publish for ``batch``: per subscription, its changes in order share one
    message (``"op": "changes"``; a lone change is a message of its own), split before it would hold
    more than ``RECORDS_PER_MESSAGE`` records or about ``_BYTES_PER_MESSAGE`` bytes. Fewer messages
    to publish, store and read back; the order of one subscription's changes is kept, and the
    subscriptions are independent of each other.

    Each message is (subject, data, number, its changes). Its JSON starts with
    ``{"origin":<origin>,"n":<number>,`` (:func:`own_prefix`; ``numbers`` counts from 1 when not
    given), so the writer knows its own messages when it reads them back without parsing them."""
    numbers = itertools.count(1) if numbers is None else numbers
    prefix = own_prefix(origin)
    out: list[tuple[str, bytes, int, list[_Change]]] = []
    open_groups: dict[str, tuple[list[_Change], list[int]]] = {}  # changes, [records, bytes]

    def emit(subject: str, members: list[_Change]) -> None:
        number = next(numbers)
        if len(members) == 1:  # the change and its subscription's path ("key") last
            _, path, change, _, _ = members[0]
            body: dict[str, Any] = {**change, "key": path}
        else:
            body = {"op": "changes", "key": members[0][1], "changes": [member[2] for member in members]}
        # The origin and number first, the rest of the object after them (orjson writes it as "{...}").
        data = b"".join((prefix, str(number).encode(), b",", memoryview(orjson.dumps(body))[1:]))
        out.append((subject, data, number, members))

    for member in batch:
        subject, _, change, _, _ = member
        group = open_groups.get(subject)
        if group is None:
            group = open_groups[subject] = ([], [0, 0])
        members, counts = group
        is_record = change["op"] == "record"
        size = 512 + (len(change["event"]) if is_record else 0)
        if members and (counts[0] + is_record > RECORDS_PER_MESSAGE or counts[1] + size > _BYTES_PER_MESSAGE):
            emit(subject, members[:])
            members.clear()
            counts[0] = counts[1] = 0
        members.append(member)
        counts[0] += is_record
        counts[1] += size
    for subject, (members, _) in open_groups.items():
        emit(subject, members)
    return out


_RETRY = 1.0


def _parse_time(value: Any) -> datetime.datetime | None:
    return None if value is None else datetime.datetime.fromisoformat(str(value))


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class JetStreamMessageLog:
    """A :class:`~openconnector.messages.recorder.MessageWriter` that publishes, and the follower that
    applies what every process published to ``store``."""

    durable = True

    def __init__(self, bus: JetStreamBus[Any], store: MemoryMessageStore) -> None:
        self._bus = bus
        self.store = store
        # Random, so no two processes share it (the same pid in every container is common).
        self._origin = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._own_prefix = own_prefix(self._origin)
        self._numbers = itertools.count(1)
        prefix = bus.settings.stream
        self.stream = f"{prefix}_MESSAGES"
        self._subject_prefix = f"{prefix}_messages"
        self._pending: list[_Change] = []
        # Own messages published, by number, until read back: their changes as _pending held them.
        self._held: dict[int, tuple[list[_Change], int]] = {}
        # A subscription's message-log subject and path, by key.
        self._names: dict[ResourceKey, tuple[str, str]] = {}
        self._held_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []  # flush() callers, woken once their changes are sent
        self._follower: asyncio.Task[None] | None = None
        self._backpressure: asyncio.Future[Any] | None = None
        # Set by start(): the bus hands what this log recorded over right before it writes deliveries.
        self._bus_hands_over = False
        self.caught_up = asyncio.Event()

    # ---------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._follower = asyncio.ensure_future(self._follow_forever())
        # The changes of the last deliveries (and those waiting for company) go out before the bus
        # closes the connection, not after.
        self._bus.before_disconnect(self._flush_now)
        self._bus.before_publish(self._hand_over_now)
        self._bus_hands_over = True

    async def _flush_now(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await self._flush()

    async def close(self) -> None:
        await self._flush_now()
        for task in (self._follower, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow_forever(self) -> None:
        while True:
            try:
                await self._bus.wait_ready(3600)
                client = self._bus.nats_client
                assert client is not None
                js = client.jetstream()
                settings = self._bus.settings
                config = StreamConfig(
                    name=self.stream,
                    subjects=[f"{self._subject_prefix}.>"],
                    retention=RetentionPolicy.LIMITS,
                    discard=DiscardPolicy.OLD,
                    max_age=self.store.max_age,
                    max_msgs_per_subject=self.store.max_messages * _CHANGES_PER_MESSAGE,
                    storage=settings.storage_type,
                    num_replicas=settings.replicas,
                )
                try:
                    await js.add_stream(config)
                except Exception:
                    await js.update_stream(config)
                # Changes are plain publishes, dropped unseen until the stream's interest reaches this
                # connection's server: caught_up waits for that too.
                if not await until_stream_takes_publishes(js, f"{self._subject_prefix}._probe", within=10.0):
                    _rare.log(logging.WARNING, "probe", "the message log's stream takes no publishes yet")
                info = await js.stream_info(self.stream)
                last = int(info.state.last_seq or 0)
                if last == 0:
                    self.caught_up.set()

                async def received(message: Msg, last: int = last) -> None:
                    sequence = _stream_sequence(message)
                    try:
                        self.apply_message(message.data, sequence)
                    except Exception:
                        log.exception("applying a message-log change failed")
                    if sequence >= last:
                        self.caught_up.set()

                subscription = await js.subscribe(
                    f"{self._subject_prefix}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
                    cb=received,
                )  # fmt: skip
                try:
                    await asyncio.Event().wait()  # until cancelled
                finally:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                _rare.log(
                    logging.WARNING, "follow", "following the message log failed: %s; retrying", failure
                )
                await asyncio.sleep(_RETRY)

    # ------------------------------------------------------------------------------- writing

    def _publish(self, key: ResourceKey, change: dict[str, Any], local: Any, soon: bool) -> None:
        """Queue ``change`` of ``key``'s log; ``local`` is what this process applies when it reads the
        change back (see :meth:`_apply_held`); ``soon``: published at the end of this loop turn (a
        record), else it may wait a little for company."""
        names = self._names.get(key)
        if names is None:
            names = self._names_of(key)
        self._pending.append((names[0], names[1], change, key, local))
        if soon:
            self._flush_soon()
        elif not self._flush_scheduled and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(_CHANGE_DELAY, self._flush_later)

    def _names_of(self, key: ResourceKey) -> tuple[str, str]:
        names = subscription_names(key)  # the names a running stream already holds
        if len(self._names) >= _NAMES_KEPT:
            self._names.clear()
        found = self._names[key] = (f"{self._subject_prefix}.{names.token}", names.path)
        return found

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            # A callback, not a task: the request that recorded usually flushes (Gateway.publish)
            # before it runs, and then there is nothing left to publish and no task to make.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._flush_scheduled = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._pending and (self._flusher is None or self._flusher.done()) and not self._hand_over_now():
            self._flusher = asyncio.ensure_future(self._flush())

    @property
    def flush_needed(self) -> bool:
        """Whether :meth:`flush` would wait: False when nothing is pending, or once started on the bus's
        connection (the bus hands the records over itself, right before it writes the deliveries), so
        a caller need not make the coroutine."""
        if not self._pending:
            return False
        return not (self._bus_hands_over and hasattr(self._bus.nats_client, "publish_now"))

    async def flush(self) -> None:
        """Return once what was recorded is handed to the NATS connection: before the bus stores the
        deliveries, so a record is in the stream before any attempt at it (one connection keeps publish
        order). The requests of one turn of the event loop share that hand-over: one message per
        subscription for all their records. Once started on the bus, at once: the bus hands the records
        over itself, right before it writes the deliveries (see the module docstring)."""
        if not self.flush_needed:
            return  # (handed over at the end of this loop turn, before any delivery the bus writes)
        self._flush_soon()  # (what waits for company goes now too)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _hand_over_now(self) -> bool:
        """What :meth:`_flush` does, as a plain call, on a connection that publishes with one
        (``publish_now``, the bus's): no task, no wait. False, doing nothing, on another connection."""
        client = self._bus.nats_client
        publish_now = getattr(client, "publish_now", None)
        if client is None or publish_now is None:
            return False
        if self._flush_timer is not None:  # what waits for company goes now too
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending and not self._waiters:  # (the bus calls this before every write)
            return True
        with contextlib.closing(self._messages()) as messages:
            for _, subject, data, number in messages:
                try:
                    backpressure = publish_now(subject, data)
                except Exception as failure:
                    self._not_published(number, failure)
                    continue
                if backpressure is not None:  # the connection's buffer is over its bound: flush it
                    self._backpressure = asyncio.ensure_future(backpressure)
        return True

    async def _flush(self) -> None:
        """Publish what was recorded, in order (one task for a burst of changes), then wake those
        waiting for it."""
        if self._hand_over_now():
            return
        with contextlib.closing(self._messages()) as messages:
            for client, subject, data, number in messages:
                try:
                    await client.publish(subject, data)
                except Exception as failure:
                    self._not_published(number, failure)

    def _messages(self) -> Generator[tuple[Any, str, bytes, int], None, None]:
        """The one hand-over of :meth:`_hand_over_now` and :meth:`_flush`: take what is pending (again
        while the caller's publishing let more be recorded), and yield the messages to publish, each
        with the connection, each held before it is published (:meth:`_not_published` lets go of one
        that was not); wake the waiters of what was taken once its messages are published. On a
        connection that is not connected what was taken is logged and lost (best effort); either way
        a waiter never waits for a change that will not be published."""
        waiters: list[asyncio.Future[None]] = []
        try:
            while self._pending:
                client = self._bus.nats_client
                batch, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                if client is None or not client.is_connected:
                    _rare.log(
                        logging.WARNING,
                        "lost",
                        "the message log lost %d change(s): NATS is not connected",
                        len(batch),
                    )
                    return
                for subject, data, number, members in _grouped(batch, self._origin, self._numbers):
                    self._hold(number, members, len(data))
                    yield client, subject, data, number
                _wake(waiters)
        finally:
            _wake(waiters)
            _wake(self._waiters)
            self._waiters = []

    def _not_published(self, number: int, failure: Exception) -> None:
        self._release(number)
        _rare.log(logging.WARNING, "publish", "publishing a message-log change failed: %s", failure)

    def record(
        self, key: ResourceKey, record: MessageRecord, event: Any, *, sequence: int | None = None
    ) -> bool:
        _, body = to_structured(event)
        created = not self.store.holds(key, record)
        received = record.received
        self._publish(key, {
            "op": "record", "id": record.id, "eventId": record.event_id, "source": record.source,
            "type": record.type, "subject": record.subject, "time": isoformat(record.time),
            "received": None if received is None else isoformat(received), "event": body.decode("utf-8"),
        }, (record, event), True)  # fmt: skip
        return created

    def attempt(
        self, key: ResourceKey, event_id: str, entry: AttemptRecord | LazyAttempt, *, subscriber: bool
    ) -> None:
        kind = type(entry)
        if kind is PendingAttempt:
            pending: PendingAttempt = entry  # type: ignore[assignment]
            if reads_message(pending.target, pending.destination):
                stored = self.store.find_event(key, event_id)  # this process's view: it may not have it yet
                if stored is not None:
                    pending.bind(stored.event, stored.record)
            published, applied = pending.published()  # the JSON, and the record read back from it
        else:
            if kind is not AttemptRecord:
                stored = self.store.find_event(key, event_id)
                if stored is not None:
                    entry.bind(stored.event, stored.record)  # type: ignore[union-attr]
            published, applied = entry.to_json(), None
        self._publish(
            key,
            {"op": "attempt", "eventId": event_id, "subscriber": subscriber, "attempt": published},
            applied,
            False,
        )

    def attempt_made(self, key: ResourceKey, attempt: Attempt, target: DeliveryTarget | None) -> None:
        """:meth:`attempt` of the recorder's ``PendingAttempt(attempt, target)`` (see
        :meth:`MessageRecorder.on_attempt <openconnector.messages.recorder.MessageRecorder.on_attempt>`),
        without making one: the same change."""
        event_id, destination = attempt.event_id, attempt.destination
        # The message's record in this process's view (it may not have it yet), when its headers read it.
        message = self.store.find_event(key, event_id) if reads_message(target, destination) else None
        published, applied = published_attempt(attempt, target, message)
        self._publish(
            key,
            {
                "op": "attempt",
                "eventId": event_id,
                "subscriber": destination is Destination.SUBSCRIBER,
                "attempt": published,
            },
            applied,
            False,
        )

    def outcome(self, key: ResourceKey, event_id: str, status: MessageStatus, reason: str | None) -> None:
        self._publish(
            key,
            {"op": "outcome", "eventId": event_id, "status": status._value_, "reason": reason},
            status,
            False,
        )

    def mark(self, key: ResourceKey, message_id: str, status: MessageStatus, reason: str | None) -> None:
        self.store.mark(key, message_id, status, reason)  # read your own writes
        self._publish(
            key, {"op": "mark", "id": message_id, "status": status.value, "reason": reason}, None, False
        )

    def discard_id(self, key: ResourceKey, message_id: str) -> None:
        self._publish(key, {"op": "discard", "id": message_id}, None, False)

    def discard_key(self, key: ResourceKey, message_key: str) -> None:
        self.discard_id(key, webhook_message_id_of_key(message_key))

    def acknowledge(self, key: ResourceKey, upto: int, now: datetime.datetime) -> int:
        acknowledged = self.store.acknowledge(key, upto, now)  # read your own writes
        self._publish(key, {"op": "ack", "upto": upto, "at": now.isoformat()}, None, False)
        return acknowledged

    # ------------------------------------------------------------------------------ applying

    def apply_message(self, data: bytes, sequence: int) -> None:
        """Apply the message ``data`` read back at stream sequence ``sequence``: this process's own
        from the changes it holds, any other (or an own one no longer held) from its JSON."""
        held = self._take_held(data)
        if held is not None:
            self._apply_held(held, sequence)
        else:
            self._apply(orjson.loads(data), sequence)

    def _hold(self, number: int, changes: list[_Change], size: int) -> None:
        held = self._held
        while held and (len(held) >= _HELD_MESSAGES or self._held_bytes + size > _HELD_BYTES):
            self._release(next(iter(held)))  # the oldest
        held[number] = (changes, size)
        self._held_bytes += size

    def _release(self, number: int) -> list[_Change] | None:
        found = self._held.pop(number, None)
        if found is None:
            return None
        self._held_bytes -= found[1]
        return found[0]

    def _take_held(self, data: bytes) -> list[_Change] | None:
        """The changes of this process's message ``data`` that it still holds, else None (another
        process's message, or one no longer held: parsed)."""
        prefix = self._own_prefix
        if not data.startswith(prefix):
            return None
        start = len(prefix)
        try:
            number = int(data[start : data.index(b",", start)])
        except ValueError:
            return None
        return self._release(number)

    def _apply_held(self, held: list[_Change], sequence: int) -> None:
        """Apply this process's message at stream sequence ``sequence`` from the changes it held: what
        :meth:`_apply` makes of its JSON (the same records, sequences, attempts and statuses), without
        parsing it or the events again: a record from the record and event it was made from, an
        attempt from the record its JSON reads back as, an outcome from its status."""
        records = 0
        store = self.store
        for _, _, change, key, local in held:
            kind = type(local)
            if kind is tuple:  # a record
                record, event = local
                store.record(key, record, event, sequence=record_sequence(sequence, records))
                records += 1
            elif kind is AttemptRecord:
                store.attempt(key, str(change["eventId"]), local, subscriber=bool(change["subscriber"]))
            elif kind is MessageStatus:  # an outcome
                store.outcome(key, str(change["eventId"]), local, change["reason"])
            else:
                self._apply_one(change, key, True, 0)

    def _apply(self, change: Mapping[str, Any], sequence: int) -> None:
        """Apply the message at stream sequence ``sequence``: one change, or several (``"changes"``)."""
        key = subscription_key_from_path(str(change.get("key", "")))
        own = change.get("origin") == self._origin
        if change.get("op") == "changes":  # several changes of one subscription (see _grouped)
            records = 0
            for part in change.get("changes") or ():
                if part.get("op") == "record":
                    self._apply_one(part, key, own, record_sequence(sequence, records))
                    records += 1
                else:
                    self._apply_one(part, key, own, 0)
        else:
            self._apply_one(change, key, own, record_sequence(sequence, 0))

    def _apply_one(self, change: Mapping[str, Any], key: ResourceKey, own: bool, sequence: int) -> None:
        """Apply one change of ``key``'s log; ``sequence`` is a record's (see :func:`record_sequence`)."""
        op, namespace, name = change.get("op"), key.namespace, key.name
        if op == "record":
            event = parse_http(
                "POST", {"Content-Type": "application/cloudevents+json"}, str(change["event"]).encode()
            ).events[0]
            received = _parse_time(change.get("received"))
            record = MessageRecord(
                id=str(change["id"]), namespace=namespace, subscription=name, event_id=str(change["eventId"]),
                source=str(change["source"]), type=str(change["type"]), subject=change.get("subject"),
                time=_parse_time(change.get("time")) or received or datetime.datetime.now(datetime.UTC),
                status=MessageStatus.PENDING, received=received,
            )  # fmt: skip
            self.store.record(key, record, event, sequence=sequence)
        elif op == "attempt":
            entry = AttemptRecord.from_json(change["attempt"])
            self.store.attempt(key, str(change["eventId"]), entry, subscriber=bool(change.get("subscriber")))
        elif op == "outcome":
            self.store.outcome(
                key, str(change["eventId"]), MessageStatus(change["status"]), change.get("reason")
            )
        elif op == "mark" and not own:
            self.store.mark(key, str(change["id"]), MessageStatus(change["status"]), change.get("reason"))
        elif op == "discard":
            self.store.discard_id(key, str(change["id"]))
        elif op == "ack" and not own:
            self.store.acknowledge(
                key, int(change["upto"]), _parse_time(change.get("at")) or datetime.datetime.now(datetime.UTC)
            )


# A change waiting to be published, and then held until read back: its subject, its subscription's path
# (the message's "key"), the change (JSON, without the key), the subscription's key, and what this
# process applies when it reads the change back (see JetStreamMessageLog._apply_held): a record's
# MessageRecord and event, an attempt's AttemptRecord, an outcome's MessageStatus, else None (applied
# from the change as another process does).
_Change = tuple[str, str, dict[str, Any], ResourceKey, Any]


def _stream_sequence(message: Msg) -> int:
    """The stream sequence of a message of the ordered consumer, read from its reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...``; nats-py's ``Msg.metadata`` parses
    the same tokens but also builds a datetime and three objects per message)."""
    tokens = (message.reply or "").split(".")
    if len(tokens) == _ACK_V1_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])
    return message.metadata.sequence.stream


_ACK_V1_TOKENS = 9
