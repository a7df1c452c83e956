"""The JetStream bus: accepted means stored in NATS JetStream; any gateway process delivers any event.

Shape
-----
One stream (``--jetstream-stream``, default ``OPENCONNECTOR``, interest retention, discard new) holds
every unfinished delivery (a message leaves once its subscription's consumer acked it): a delivery of
an event to subscription ``ns/name`` is one message on ``<stream>.d.<ns>.<name>`` whose body is the
encoded HTTP body and whose ``Oc-Meta`` header carries the event's id, type, source, content mode and
HTTP headers (:mod:`openconnector.delivery.durable`).
Each subscription has one durable consumer filtered on its subject, pushing to a deliver subject that
every gateway process subscribes to in one queue group: the work is shared, each message goes to one
process as soon as it is stored, and ``MaxAckPending`` = ``maxConcurrency`` bounds the deliveries in
flight across all processes.

All or nothing
--------------
:meth:`JetStreamBus.store` publishes every delivery of a request as one **atomic batch** (JetStream's
ADR-50 atomic batch publish, ``allow_atomic`` on the stream): the server commits all messages of the
batch or none, so a refused request (503) leaves nothing that could be delivered, and there is no
staging area to clean up. A request of one delivery is a plain publish. The batch's last message (or
the single message) carries ``Nats-Msg-Id`` = hash of the request's (namespace, source, id,
subscription) tuples: a sender's retry of the same request within the stream's duplicate window
(``--jetstream-duplicate-window``, default 2 min) is recognised (the server answers "duplicate") and
stored once. A retry after the window, or a request that only partly overlaps an earlier one, is
stored again: deliveries are at-least-once.

Pacing
------
Intake and delivery share the process's event loop, and senders outnumber the ``maxConcurrency``
attempts in flight: unpaced, intake takes most of the loop while the backlog grows. So a request for a
subscription that is delivering and has ``pace_backlog`` deliveries waiting waits for room (at most
``pace_wait``, then it is stored anyway); see :meth:`JetStreamBus._pace`.

Delivery
--------
A message is one attempt: :meth:`~openconnector.delivery.retry.Deliverer.try_once` decides, and the
message is acked (delivered, dead-lettered or dropped) or NAKed with the retry delay (policy backoff
with full jitter, capped by ``backoffMax``, at least Retry-After). ``num_delivered`` is the attempt
number. While an attempt (or the dead letter) takes long, ``in_progress()`` keeps it from being
redelivered; when its process dies, the message comes back after AckWait. The extra delivery beyond
``retries + 1`` only finishes an event whose last attempt was cut off (dead letter or counted drop);
when that one is cut off too, JetStream's max-deliveries advisory is counted as a drop
(``maxDeliveries``) by one process.

State that survives a restart
-----------------------------
* suspensions (410, auto-pause) in the KV bucket ``<stream>_suspensions``, tied to the delivery
  configuration (:func:`~openconnector.delivery.durable.suspension_fingerprint`) and watched by
  every process, so a 410 seen by one process stops the others too;
* the attempt log, the last 100 per subscription, in the stream ``<stream>_ATTEMPTS`` (published every
  ``_ATTEMPT_FLUSH_DELAY`` seconds and when the bus closes, best effort);
* the Standard Webhooks replay-guard ids of Consumers in the KV bucket ``<stream>_replay``
  (:class:`JetStreamReplayStore`).

Health counters are per process (like the in-memory bus).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import hashlib
import itertools
import json
import logging
import math
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Self

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import _HEADER_KEY_RE, _HEADER_VALUE_NEWLINES, NO_RESPONDERS_STATUS, _validate_subject
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from nats.protocol.command import hpub_cmd, pub_cmd

from openconnector.api.keys import ResourceKey
from openconnector.delivery.attempts import DEFAULT_ATTEMPT_LOG_SIZE, Attempt, AttemptLog
from openconnector.delivery.deadlines import SharedDeadlines
from openconnector.delivery.durable import (
    META_HEADER,
    MSG_ID_HEADER,
    attempts_from_record,
    attempts_to_record,
    consumer_name,
    consumer_settings,
    decode_meta,
    delivery_subject,
    encode_meta,
    nak_delay,
    request_msg_id,
    subscription_names,
    suspension_fingerprint,
)
from openconnector.delivery.health import HealthReason, SubscriptionHealth
from openconnector.delivery.nats_reader import FrameParser
from openconnector.delivery.outcomes import (
    BusUnavailableError,
    DeliveryClosedError,
    DeliveryObserver,
    DropReason,
    EventTooLargeError,
    FinalOutcome,
    OfferResult,
    PauseCallback,
)
from openconnector.delivery.policy import Rng
from openconnector.delivery.prepared import (
    E,
    Encoder,
    Prepared,
    Reencoder,
    cloudevents_reencoder,
    prepare_once,
)
from openconnector.delivery.retry import Deliverer, DeliveryState
from openconnector.delivery.sending import clip
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.egress import EgressPolicy
from openconnector.refusal import Refusal

__all__ = ["MAX_BATCH", "JetStreamBus", "JetStreamReplayStore", "JetStreamSettings", "StreamRetentionError"]

logger = logging.getLogger("openconnector.delivery")

#: Most messages one atomic batch may hold (the server's limit); a larger fan-out is refused (413).
MAX_BATCH = 1000
_DUPLICATE_IN_BATCH = 10201  # "atomic publish batch contains duplicate message id": stored before
_RETRY_AFTER = 5  # seconds a refused sender is asked to wait
# A publish no stream took (no responders) is sent again after these pauses (doubling), within its bound.
_NO_RESPONDERS_FIRST_PAUSE = 0.02
_NO_RESPONDERS_LAST_PAUSE = 0.5
_RECONNECT_WAIT = 1.0
_CONNECT_TIMEOUT = 2.0  # one TCP/TLS/handshake attempt to one server
_CLOSE_BOUND = 5.0  # seconds close() waits for each step of shutting down (tasks, the connection)
_PENDING_REFRESH = 5.0  # seconds between reads of a consumer's backlog (the queue-depth gauge)
_REPLAY_KEY_PREFIX = "r_"
_PACE_PROGRESS = 1.0  # a subscription that finished a delivery within this many seconds is delivering
#: Seconds the attempt log collects attempts before publishing them: under load one message per
#: subscription and interval instead of one per delivery (best effort, like the publish itself).
_ATTEMPT_FLUSH_DELAY = 0.1
_KEEPALIVE_SWEEP = 1.0  # seconds between looks for long attempts that need an in_progress()
_ACK_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
#: Seconds the NATS connection gathers commands before it writes them (see _CoalescingClient).
_WRITE_COALESCE = 0.0005


@dataclass(frozen=True)
class JetStreamSettings:
    """Connection and stream settings (the ``--nats-*`` and ``--jetstream-*`` flags)."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "OPENCONNECTOR"
    replicas: int = 1
    storage: str = "file"
    max_bytes: int = -1
    max_age: float = 7 * 24 * 3600.0
    duplicate_window: float = 120.0
    creds_file: str | None = None
    token: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    publish_timeout: float = 4.0  # below the gateway's submit timeout (5 s): a timeout is our answer
    name: str = "openconnector-gateway"
    #: Intake pacing: while a subscription that is delivering has this many stored deliveries waiting,
    #: a request for it waits (at most ``pace_wait`` seconds, then it is stored anyway). 0: no pacing.
    pace_backlog: int = 256
    pace_wait: float = 1.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("nats url: at least one server is needed")
        if not 0 < len(self.stream) <= 32 or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in self.stream
        ):
            raise ValueError(f"jetstream stream: {self.stream!r} is not a valid stream name")
        if self.storage not in ("file", "memory"):
            raise ValueError(f"jetstream storage: must be file or memory, got {self.storage!r}")
        if not 1 <= self.replicas <= 5:
            raise ValueError(f"jetstream replicas: must be 1 to 5, got {self.replicas}")
        if self.pace_backlog < 0:
            raise ValueError(f"jetstream pace backlog: must be 0 or more, got {self.pace_backlog}")
        if not 0 <= self.pace_wait <= 60:
            raise ValueError(f"jetstream pace wait: must be 0 to 60 seconds, got {self.pace_wait}")

    @property
    def storage_type(self) -> StorageType:
        return StorageType.FILE if self.storage == "file" else StorageType.MEMORY

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class _CoalescingClient(NatsClient):
    """nats-py's client, writing what is published within ``_WRITE_COALESCE`` seconds in one go.

    nats-py writes at the next turn of the event loop after a publish: under load nearly every publish,
    PubAck-awaited store, ack and message-log change is a socket write of its own, and a wake-up of
    nats-server on the same cores. Waiting half a millisecond first lets the commands of many deliveries
    share one write (measured: nats-server CPU per delivery -26 %, the open loop at 800 events/s keeps up
    where it fell behind). Nothing is acknowledged earlier than before: a PubAck still answers the write.

    Overrides nats-py's private ``_flusher`` loop (the library's loop plus the wait); nats-py is pinned
    exactly in pyproject.toml, and tests/unit/test_s5_js_wire.py checks the method is still there.
    """

    def __init__(self) -> None:
        super().__init__()
        # Subscriptions whose messages go straight to a function (see subscribe_direct), by sid.
        self._direct: dict[int, Callable[[Msg], None]] = {}
        # Whole MSG/HMSG frames read without nats-py's per-message regex, buffer moves and coroutine.
        self._ps = FrameParser(self)

    async def subscribe_direct(self, subject: str, handler: Callable[[Msg], None], queue: str = "") -> Any:
        """``subscribe`` with ``handler`` called for each message as the connection reads it: not queued
        for the subscription's task first (per message a queue put and get and a task switch less; for
        every delivery, its PubAck and the delivered message). ``handler`` must not block: it answers a
        future or starts a task. Returns nats-py's subscription (unsubscribe it as usual)."""

        async def queued(message: Msg) -> None:  # what arrives before the handler is registered
            handler(message)

        subscription = await self.subscribe(subject, queue=queue, cb=queued)
        self._direct[subscription._id] = handler
        return subscription

    def _process_msg_now(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None] | None:
        """``_process_msg`` as a plain call where it can be one (for :class:`FrameParser`): a message for a
        direct subscription with a plain header block (or none) goes to its handler here and now. Returns
        None, or what the caller must await for the same effect (nats-py's ``_process_msg`` for any other
        message, the error callback for a handler's error)."""
        handler = self._direct.get(sid)
        if handler is not None:
            parsed = _plain_headers(headers)
            if not isinstance(parsed, _NotPlain):
                return self._to_handler(handler, sid, subject, reply, data, parsed)
        return self._process_msg(sid, subject, reply, data, headers)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._direct.get(sid)
        if handler is None:  # (nats-py's parser passes None for a message without headers)
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            return
        parsed = _plain_headers(headers)
        if isinstance(parsed, _NotPlain):
            parsed = await self._process_headers(headers)
        error = self._to_handler(handler, sid, subject, reply, data, parsed)
        if error is not None:
            await error

    def _to_handler(
        self,
        handler: Callable[[Msg], None],
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> Awaitable[None] | None:
        """nats-py's ``_process_msg`` for a plain (not JetStream-managed) subscription without max_msgs or
        future, minus the pending queue: the same counters and message, given to ``handler`` at once.
        Returns None, or the error callback's coroutine for a handler's error (as nats-py reports a
        callback's error, not ending the read loop)."""
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        sub = self._subs.get(sid)
        if sub is None:  # unsubscribed meanwhile
            return None
        sub._received += 1
        message = self._build_message(sid, subject, reply, data, headers)
        try:
            handler(message)
        except Exception as failure:
            return self._error_cb(failure)
        return None

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        super()._remove_sub(sid, max_msgs)
        self._direct.pop(sid, None)

    async def _flusher(self) -> None:
        while self.is_connected and not self.is_connecting:
            queue = self._flush_queue
            assert queue is not None
            future: asyncio.Future[Any] = await queue.get()
            await asyncio.sleep(_WRITE_COALESCE)
            transport = self._transport
            assert transport is not None
            # Every publish meanwhile queued a future of its own (the queue was empty): its data goes out
            # with this write, so those futures are answered with it (not those queued after the write).
            written = [future] + [queue.get_nowait() for _ in range(queue.qsize())]
            try:
                if self._pending_data_size > 0:
                    transport.writelines(self._pending[:])
                    self._pending = []
                    self._pending_data_size = 0
                    await transport.drain()  # type: ignore[no-untyped-call]
            except OSError as failure:
                await self._error_cb(failure)
                await self._process_op_err(failure)
                break
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                break  # as nats-py: cancelled at close, or the loop is closing
            finally:
                for done in written:
                    if not done.done():
                        done.set_result(None)

    async def _send_publish(
        self, subject: str, reply: str, payload: bytes, payload_size: int, headers: dict[str, Any] | None
    ) -> None:
        """nats-py's ``_send_publish`` (the same command bytes, counters and flush), with the header block
        from :func:`_header_block`: nats-py cleans every header value with ``str.translate``, a Python-
        level lookup per character, which made the ``Oc-Meta`` header of each delivery cost ~9 µs."""
        await self._send_command(self._command(subject, reply, payload, payload_size, headers))
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    def _command(
        self, subject: str, reply: str, payload: bytes, payload_size: int, headers: Mapping[str, Any] | None
    ) -> bytes:
        """The PUB or HPUB command of a publish, counted (the part of ``_send_publish`` before sending)."""
        if subject == "":
            raise nats.errors.BadSubjectError
        if headers is None:
            command = pub_cmd(subject, reply, payload)
        else:
            command = hpub_cmd(subject, reply, _header_block(headers), payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        return command

    def publish_now(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: Mapping[str, str] | None = None
    ) -> Awaitable[None] | None:
        """nats-py's ``publish`` as a plain call: the same checks, refusals, command and counters, and the
        command queued for the flusher at once (no chain of five coroutines per ack and per stored
        delivery). Returns None, or, in the cases where nats-py's ``publish`` waits (the pending buffer
        over its bound, or no flusher task to kick), what the caller must await for the same effect."""
        if not self._skip_subject_validation:
            _validate_subject(subject)
            if reply:
                _validate_subject(reply)
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        payload_size = len(payload)
        if not self.is_connected and (
            self._max_pending_size <= 0 or payload_size + self._pending_data_size > self._max_pending_size
        ):
            raise nats.errors.OutboundBufferLimitError
        if payload_size > self._max_payload:
            raise nats.errors.MaxPayloadError
        command = self._command(subject, reply, payload, payload_size, headers)
        self._pending.append(command)
        self._pending_data_size += len(command)
        if self._max_pending_size > 0 and self._pending_data_size > self._max_pending_size:
            return self._flush_pending(force_flush=True)
        queue = self._flush_queue
        if queue is not None and queue.empty():
            flusher = self._flusher_task
            if not self.is_connected or flusher is None or flusher.done():
                return self._flush_pending()
            queue.put_nowait(asyncio.get_running_loop().create_future())  # kick the flusher
        return None


class _NotPlain:
    """A header block :func:`_plain_headers` leaves to nats-py."""


_NOT_PLAIN = _NotPlain()


def _plain_headers(block: bytes | None) -> dict[str, str] | _NotPlain | None:
    """What nats-py's ``_process_headers`` makes of ``block`` (without fast_mail_parser, which the
    gateway does not install), for a block without an inline status (``NATS/1.0 503``, a heartbeat):
    those, and anything else not plain, are ``_NOT_PLAIN`` (left to nats-py). The same lines, names and
    values, without a coroutine and without a generator per line for the whitespace-in-name rule."""
    if not block:
        return None
    if len(block) <= _HEADER_BLOCK_START or block[_HEADER_BLOCK_START - 2] == _SPACE:
        return _NOT_PLAIN  # an inline status, or too short to be ours: nats-py decides
    out: dict[str, str] = {}
    for line in block[_HEADER_BLOCK_START:].split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:  # whitespace in the name (str.isspace's): nats-py skips it
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out or None


_HEADER_LINE = b"NATS/1.0\r\n"
_HEADER_BLOCK_START = len(_HEADER_LINE)
_SPACE = ord(" ")
#: Header names seen to need no cleaning (stripped already, valid): a few constants in practice.
_CLEAN_HEADER_NAMES: set[str] = set()
_CLEAN_HEADER_NAMES_MAX = 64


def _header_block(headers: Mapping[str, Any]) -> bytes:
    """The header block nats-py's ``_send_publish`` writes for ``headers`` (names stripped, empty ones
    left out, invalid ones refused with ``BadHeaderError``; values stripped, CR and LF as spaces), built
    without ``str.translate`` when a value has no CR or LF (then it changes nothing)."""
    lines = [_HEADER_LINE]
    for name, value in headers.items():
        if name not in _CLEAN_HEADER_NAMES:
            key = name.strip()
            if not key:
                continue
            if not _HEADER_KEY_RE.fullmatch(key):
                raise nats.errors.BadHeaderError(key)
            if key == name and len(_CLEAN_HEADER_NAMES) < _CLEAN_HEADER_NAMES_MAX:
                _CLEAN_HEADER_NAMES.add(name)
            name = key
        text = value.strip()
        if "\r" in text or "\n" in text:
            text = text.translate(_HEADER_VALUE_NEWLINES)
        lines.append(name.encode())
        lines.append(b": ")
        lines.append(text.encode())
        lines.append(b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class _DurableAttemptLog(AttemptLog):
    """The attempt log of this process, each entry also published to the attempt-log stream."""

    __slots__ = ("_key", "_publish")

    def __init__(self, *, key: ResourceKey, publish: Callable[[ResourceKey, Attempt], None]) -> None:
        super().__init__()
        self._key = key
        self._publish = publish

    def append(self, attempt: Attempt) -> None:
        super().append(attempt)
        self._publish(self._key, attempt)


class _Subscription:
    """One installed target on this process: its configuration, health, attempt log and receiver."""

    def __init__(
        self,
        target: DeliveryTarget,
        clock: Callable[[], float],
        live_since: float,
        publish: Callable[[ResourceKey, Attempt], None],
    ) -> None:
        self.target = target
        self.health = SubscriptionHealth(target.health, clock=clock)
        self.attempts: AttemptLog = _DurableAttemptLog(key=target.key, publish=publish)
        self.live_since = live_since  # the consumer delivers what was published from then on
        self.receiver: asyncio.Task[None] | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        # Messages being attempted here, by id(): the message and the loop time JetStream last heard of
        # it (received, or the last in_progress()); the keep-alive sweep reads it.
        self.working: dict[int, list[Any]] = {}
        self.pending = 0  # last known stored-but-unfinished deliveries (consumer info)
        self.closed = False
        self.consumer_ready = asyncio.Event()
        # Suspension entries at or below this KV revision are history here (written by this process,
        # or older than a resume): the watcher does not apply them again.
        self.revision_floor = 0
        self.revision_seen = 0
        # Intake pacing (see JetStreamBus._pace): the consumer's undelivered backlog as last seen on a
        # delivered message (``receipts`` counts those readings) plus what this process stored since,
        # when this process last finished a delivery, and the requests waiting for the backlog to
        # shrink, oldest first (each is woken with the reading its reserved room belongs to).
        self.backlog = 0
        self.receipts = 0
        self.finished_at = -math.inf
        self.pace_waiters: collections.deque[asyncio.Future[int]] = collections.deque()

    @property
    def key(self) -> ResourceKey:
        return self.target.key


class JetStreamBus(Generic[E]):
    """The durable bus (see the module docstring). Same constructor hooks as the in-memory
    :class:`~openconnector.delivery.memory.Dispatcher`; ``clock`` and ``sleep`` drive signatures,
    Retry-After dates and dead-letter retries (retries of subscribers wait in JetStream)."""

    def __init__(
        self,
        encoder: Encoder[E],
        settings: JetStreamSettings,
        *,
        reencoder: Reencoder = cloudevents_reencoder,
        on_paused: PauseCallback | None = None,
        observer: DeliveryObserver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connection_limit: int = 0,
        user_agent: str = "openconnector-delivery",
        egress: EgressPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Rng | None = None,
    ) -> None:
        self.settings = settings
        self._encoder = encoder
        self._clock = clock
        self._deliverer = Deliverer.over_http(
            reencoder=reencoder,
            observer=observer,
            on_paused=on_paused,
            ssl_context=ssl_context,
            connection_limit=connection_limit,
            user_agent=user_agent,
            egress=egress,
            clock=clock,
            sleep=sleep,
            rng=rng,
            on_stop=self._on_stop,
        )
        self._sender = self._deliverer.sender
        self._subs: dict[ResourceKey, _Subscription] = {}
        self._nc: _CoalescingClient | None = None
        self._js: JetStreamContext | None = None
        self._suspensions: KeyValue | None = None
        self._replay: KeyValue | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._provisioned = asyncio.Event()
        self._connected = False
        self._unready_reason = "connecting to NATS"
        self._logged_state: bool | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prefix = settings.stream
        self._attempt_stream = f"{settings.stream}_ATTEMPTS"
        self._attempt_prefix = f"{settings.stream}_attempts"
        self._attempt_backlog: list[tuple[str, Attempt]] = []
        self._attempt_flusher: asyncio.Task[None] | None = None
        # Publish acknowledgements come to one subscription of this bus, <prefix><number> (see _request).
        self._ack_prefix = f"_OC_PUBACK.{uuid.uuid4().hex}."
        self._ack_numbers = itertools.count(1)
        self._ack_waiters: dict[str, asyncio.Future[Msg]] = {}
        # The deadlines of the PubAck waits, and of the requests waiting under intake pacing: one timer each.
        self._ack_deadlines: SharedDeadlines[asyncio.Future[Msg]] = SharedDeadlines(
            asyncio.Future.done, _time_out
        )
        self._pace_deadlines: SharedDeadlines[asyncio.Future[int]] = SharedDeadlines(
            asyncio.Future.done, _stop_waiting
        )
        self._ack_subscribed = False
        self._before_disconnect: list[Callable[[], Awaitable[None]]] = []
        # Stored requests' deliveries to write at the end of this loop turn (see _send_soon): the
        # connection, the messages (subject, body, reply, headers) and the PubAck waiter of each request.
        self._outbox: list[tuple[_CoalescingClient, list[_Outgoing], asyncio.Future[Msg]]] = []
        self._outbox_scheduled = False
        self._before_publish: list[Callable[[], object]] = []

    # ------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and provision in the background; intake answers 503 until that is done."""
        self._sender.start()
        self._spawn(self._connect_forever(), "jetstream-connect")

    async def wait_ready(self, deadline: float = 10.0) -> None:
        """Wait until connected and provisioned (tests, and callers that prefer to start ready)."""
        async with asyncio.timeout(deadline):
            await self._provisioned.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ready(self) -> bool:
        return not self._closed and self._connected and self._provisioned.is_set()

    @property
    def consumers_ready(self) -> bool:
        """Every installed subscription's consumer exists (until then a request addressed to one waits,
        at most ``publish_timeout``, then gets 503 bus-unavailable). Not part of readiness: one consumer
        JetStream cannot create must not keep the others' traffic away."""
        return all(sub.consumer_ready.is_set() for sub in self._subs.values() if not sub.closed)

    @property
    def readiness_detail(self) -> str:
        if self._closed:
            return "the delivery bus is closed"
        return (
            "" if self.ready else f"the event bus (NATS JetStream) is not available: {self._unready_reason}"
        )

    async def close(self, drain_deadline: float = 10.0) -> int:
        """Stop receiving; let in-flight deliveries finish for up to ``drain_deadline`` seconds. What is
        not finished stays stored and is redelivered (to another process, or after a restart): nothing
        is dropped, so this returns 0."""
        if self._closed:
            return 0
        self._closed = True
        subs = list(self._subs.values())
        await asyncio.gather(*(self._stop_receiving(sub, drain_deadline) for sub in subs))
        await self._deliverer.wait_callbacks(drain_deadline)
        if self._attempt_flusher is not None:
            self._attempt_flusher.cancel()
        with contextlib.suppress(Exception):  # what waits for the next flush goes out now
            async with asyncio.timeout(_CLOSE_BOUND):
                await self._flush_attempts()
        for publish_rest in self._before_disconnect:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_BOUND):
                    await publish_rest()
        if self._watcher is not None:
            # Ends the watcher's iteration without relying on cancellation, which nats-py can swallow
            # while the watcher is being set up (seen: close() waiting for ever on this task).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_BOUND):
                    await self._watcher.stop()  # type: ignore[no-untyped-call]
        for task in list(self._tasks):
            task.cancel()
        await _bounded_wait(self._tasks, "background tasks of the JetStream bus")
        if self._nc is not None and not self._nc.is_closed:
            try:
                async with asyncio.timeout(_CLOSE_BOUND):
                    await self._nc.close()
            except TimeoutError:
                logger.warning("closing the NATS connection took over %.0f s; left behind", _CLOSE_BOUND)
            except Exception as failure:
                logger.debug("closing the NATS connection failed: %s", failure)
        await self._sender.close()
        return 0

    def before_disconnect(self, publish_rest: Callable[[], Awaitable[None]]) -> None:
        """Have :meth:`close` await ``publish_rest`` after the deliveries finished and before the NATS
        connection closes (the message log publishes what it still holds)."""
        self._before_disconnect.append(publish_rest)

    def before_publish(self, hand_over: Callable[[], object]) -> None:
        """Have ``hand_over`` called right before the deliveries of stored requests are written to the
        connection (the message log hands over what it recorded, the requests' records among it, so a
        record is in its stream before any attempt at it: one connection keeps order)."""
        self._before_publish.append(hand_over)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, connected: bool, reason: str = "") -> None:
        self._connected = connected
        if reason:
            self._unready_reason = reason
        ready = self.ready
        if ready != self._logged_state:  # once per transition, not per request
            self._logged_state = ready
            if ready:
                logger.info("event bus (NATS JetStream, stream %s) available", self.settings.stream)
            else:
                logger.warning("event bus (NATS JetStream) unavailable: %s", self._unready_reason)

    async def _connect_forever(self) -> None:
        settings = self.settings

        async def disconnected() -> None:
            if not self._closed:
                self._set_state(False, "disconnected from NATS")

        async def reconnected() -> None:
            self._set_state(True)
            if self._provisioned.is_set():
                # A server that lost its memory-stored stream (or a new cluster) gets it back.
                self._spawn(self._reprovision(), "jetstream-reprovision")

        async def error(failure: Exception) -> None:
            self._unready_reason = f"{type(failure).__name__}: {clip(str(failure))}"

        options: dict[str, Any] = {
            "servers": list(settings.servers),
            "name": settings.name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": _RECONNECT_WAIT,
            "connect_timeout": _CONNECT_TIMEOUT,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
            "error_cb": error,
        }
        if settings.creds_file:
            options["user_credentials"] = settings.creds_file
        if settings.token:
            options["token"] = settings.token
        tls = settings.tls_context()
        if tls is not None:
            options["tls"] = tls
        # nats-py's first connect cycles through the servers for ever when reconnecting is unlimited
        # (max_reconnect_attempts=-1): one round over every server is all one try may take.
        one_round = len(settings.servers) * (_CONNECT_TIMEOUT + _RECONNECT_WAIT) + _CONNECT_TIMEOUT
        while not self._closed:
            try:
                async with asyncio.timeout(one_round):
                    client = _CoalescingClient()
                    await client.connect(**options)
                    self._nc = client
                break
            except TimeoutError:
                self._set_state(
                    False, f"cannot connect to {', '.join(settings.servers)}: no answer in {one_round:.0f} s"
                )
            except Exception as failure:  # unreachable, refused, TLS or auth: say so once, retry
                self._set_state(False, f"cannot connect to {', '.join(settings.servers)}: {failure!s}")
                await asyncio.sleep(_RECONNECT_WAIT)
        if self._nc is None:
            return  # closed before NATS was ever reached
        self._js = self._nc.jetstream(timeout=settings.publish_timeout)
        self._connected = True
        while not self._closed:
            try:
                if not self._ack_subscribed:  # (nats-py renews it after a reconnect)
                    await self._nc.subscribe_direct(f"{self._ack_prefix}*", self._acknowledge)
                    self._ack_subscribed = True
                await self._provision()
                break
            except Exception as failure:
                self._set_state(self._nc.is_connected, f"provisioning the stream failed: {failure!s}")
                await asyncio.sleep(_RECONNECT_WAIT)
        self._provisioned.set()
        self._set_state(self._nc.is_connected)
        self._spawn(self._watch_suspensions(), "jetstream-suspensions")
        self._spawn(self._listen_for_max_deliveries(), "jetstream-max-deliveries")
        self._spawn(self._keep_alive_forever(), "jetstream-keep-alive")
        for sub in self._subs.values():
            self._start_receiving(sub)

    async def _reprovision(self) -> None:
        # Interest retention: a message stored before its consumer is back would have no interest and
        # be removed at once, so intake waits (bounded, then 503) until the consumers are re-ensured.
        live = [sub for sub in self._subs.values() if sub.consumer_ready.is_set() and not sub.closed]
        for sub in live:
            sub.consumer_ready.clear()
        try:
            await self._provision()
            for sub in live:
                if not sub.closed:
                    await self._ensure_consumer(sub)
        except Exception as failure:
            logger.warning("re-provisioning the stream after a reconnect failed: %s", failure)
        finally:
            for sub in live:
                sub.consumer_ready.set()

    async def _provision(self) -> None:
        """Create or update the stream, the attempt-log stream and the KV buckets (idempotent)."""
        js = self._jetstream()
        settings = self.settings
        await _refuse_other_retention(js, settings.stream)
        config = StreamConfig(
            name=settings.stream,
            subjects=[f"{self._prefix}.>"],
            # A message is removed once the consumer of its subscription acked it (delivered, dead-
            # lettered or dropped): max-bytes bounds the backlog, not the traffic of the last days.
            retention=RetentionPolicy.INTEREST,
            discard=DiscardPolicy.NEW,  # full: refuse new requests (503), never drop stored ones
            max_bytes=settings.max_bytes,
            max_age=settings.max_age,
            duplicate_window=settings.duplicate_window,
            storage=settings.storage_type,
            num_replicas=settings.replicas,
            allow_atomic=True,
        )
        await _create_or_update_stream(js, config)
        await _create_or_update_stream(
            js,
            StreamConfig(
                name=self._attempt_stream,
                subjects=[f"{self._attempt_prefix}.>"],
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.OLD,
                max_msgs_per_subject=DEFAULT_ATTEMPT_LOG_SIZE,
                max_age=settings.max_age,
                storage=settings.storage_type,
                num_replicas=settings.replicas,
            ),
        )
        self._suspensions = await _bucket(
            js,
            KeyValueConfig(
                bucket=f"{settings.stream}_suspensions",
                storage=settings.storage_type,
                replicas=settings.replicas,
            ),
        )
        self._replay = await _bucket(
            js,
            KeyValueConfig(
                bucket=f"{settings.stream}_replay",
                storage=settings.storage_type,
                replicas=settings.replicas,
                ttl=24 * 3600.0,  # an upper bound; each id carries its own TTL
                limit_marker_ttl=1.0,
            ),
        )

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailableError(self.readiness_detail or "not connected to NATS", _RETRY_AFTER)
        return self._js

    @property
    def replay_bucket(self) -> KeyValue | None:
        return self._replay

    @property
    def nats_client(self) -> NatsClient | None:
        """The connection (the message log publishes and follows its own stream over it)."""
        return self._nc

    # -------------------------------------------------------------------------------- targets

    def set_target(self, target: DeliveryTarget) -> None:
        self.update_target(target.key, target)

    def update_target(self, key: ResourceKey, target: DeliveryTarget) -> None:
        """Install or reconfigure ``key``; a new subscription gets what is published from now on."""
        if target.key != key:
            raise ValueError(f"target.key: {target.key} does not match the key being updated {key}")
        if self._closed:
            raise DeliveryClosedError("the bus is closed")
        sub = self._subs.get(key)
        if sub is None:
            sub = self._subs[key] = _Subscription(
                target, self._clock, time.time(), self.record_attempt_durably
            )
            if self._provisioned.is_set():
                self._start_receiving(sub)
            return
        if sub.target is target:
            return
        old, sub.target = sub.target, target
        if target.health != old.health:
            sub.health.reconfigure(target.health)
        if consumer_settings(old) != consumer_settings(target) and self._provisioned.is_set():
            self._spawn(self._reconfigure_consumer(sub), f"jetstream-consumer:{key}")

    async def remove_target(self, key: ResourceKey, *, drain_deadline: float = 10.0) -> int:
        """Stop delivering ``key`` here, then delete its consumer: what it still held is counted as
        dropped (reason ``removed``). Returns that count (0 when another process deleted it first)."""
        sub = self._subs.pop(key, None)
        if sub is None:
            return 0
        await self._stop_receiving(sub, drain_deadline)
        if self._js is None:
            return 0
        dropped = 0
        try:
            info = await self._js.consumer_info(self.settings.stream, consumer_name(key))
            dropped = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            await self._js.delete_consumer(self.settings.stream, consumer_name(key))
            with contextlib.suppress(Exception):
                await self._js.purge_stream(self.settings.stream, subject=delivery_subject(self._prefix, key))
        except nats.js.errors.NotFoundError:
            return 0
        except Exception as failure:
            logger.warning("removing the consumer of %s failed: %s", key, failure)
            return 0
        if dropped:
            sub.health.record_dropped_many(dropped, DropReason.REMOVED, "subscription removed")
            logger.error("dropped %d undelivered events for %s (subscription removed)", dropped, key)
            for _ in range(dropped):  # the ids stay in the stream: the count is what metrics need
                self._deliverer.report_outcome(key, "", FinalOutcome.DROPPED, DropReason.REMOVED)
        if self._suspensions is not None:
            with contextlib.suppress(Exception):
                await self._suspensions.delete(subscription_names(key).token)
        return dropped

    def resume(self, key: ResourceKey) -> bool:
        sub = self._subs.get(key)
        if sub is None or not sub.health.paused:
            return False
        sub.health.resume()
        sub.revision_floor = max(sub.revision_floor, sub.revision_seen)
        logger.info("delivery to %s resumed", key)
        if self._suspensions is not None:
            self._spawn(self._forget_suspension(key), f"jetstream-resume:{key}")
        return True

    def target_keys(self) -> list[ResourceKey]:
        return list(self._subs)

    def target(self, key: ResourceKey) -> DeliveryTarget:
        return self._sub(key).target

    def health(self, key: ResourceKey) -> SubscriptionHealth:
        return self._sub(key).health

    def attempts(self, key: ResourceKey) -> AttemptLog:
        return self._sub(key).attempts

    def queue_depth(self, key: ResourceKey) -> int:
        """Stored deliveries not yet finished (the consumer's figure, refreshed every few seconds), or
        those in flight here when more."""
        sub = self._sub(key)
        return max(sub.pending, len(sub.in_flight))

    def _sub(self, key: ResourceKey) -> _Subscription:
        try:
            return self._subs[key]
        except KeyError:
            raise KeyError(f"no delivery target {key}") from None

    # --------------------------------------------------------------------------------- intake

    async def store_again(self, plan: Sequence[tuple[ResourceKey, E]], msg_id: str) -> OfferResult:
        """:meth:`store` under the fresh ``msg_id``: a resend must not be taken for a sender's retry
        within the duplicate window."""
        return await self.store(plan, msg_id=msg_id)

    async def store(
        self,
        plan: Sequence[tuple[ResourceKey, E]],
        *,
        msg_id: str | None = None,
        deadline: float | None = None,
    ) -> OfferResult:
        """Store every delivery of ``plan`` in one atomic batch, or none (see the module docstring).

        Raises :class:`BusUnavailableError` when JetStream cannot store it now (unreachable, stream
        full, not confirmed within ``publish_timeout``): nothing of the request is delivered then.
        ``deadline`` (the event loop's ``time()``) bounds the whole store, pacing included: past it,
        :class:`TimeoutError` (the caller's own bound, as ``asyncio.timeout`` would raise it, without a
        timer per request), except while a subscription's consumer is still being set up (that is
        JetStream's: BusUnavailableError). One coroutine for the common case: the publish and its wait are
        inline."""
        if self._closed:
            raise DeliveryClosedError("the bus is closed")
        reserved: list[tuple[_Subscription, int]] = []
        try:
            if self._may_pace(plan):  # (else _pace would find nothing to wait for: no coroutine for that)
                await self._pace(plan, reserved, deadline)
            skipped: list[ResourceKey] = []
            dropped: list[tuple[_Subscription, E, str]] = []
            cache: dict[tuple[int, ContentMode], Prepared | str] = {}
            messages: list[tuple[ResourceKey, Prepared]] = []
            tuples: list[tuple[str, str, str, str]] = []
            subs = self._subs
            for key, event in plan:
                sub = subs.get(key)
                if sub is None or sub.closed:
                    skipped.append(key)
                    continue
                prepared = prepare_once(cache, event, sub.target.content_mode, self._encoder)
                if isinstance(prepared, str):
                    dropped.append((sub, event, prepared))
                    continue
                messages.append((key, prepared))
                tuples.append((key.namespace, prepared.source, prepared.id, subscription_names(key).path))
            if len(messages) > MAX_BATCH:
                return OfferResult(
                    False,
                    skipped=skipped,
                    too_large=sorted({key for key, _ in messages}),
                    describe=f"the request fans out to {len(messages)} deliveries; at most {MAX_BATCH} "
                    "can be stored at once",
                )
            if messages:
                for key, _ in messages:
                    if not subs[key].consumer_ready.is_set():
                        await self._consumers_live(messages, deadline)
                        break
                readings = {key: subs[key].receipts for key, _ in messages}
                await self._publish(messages, msg_id or request_msg_id(tuples), deadline)
                for key, _ in messages:
                    sub = subs[key]
                    # A reading taken while this was stored may count it already: count it only when none
                    # came in between (an undercount lasts until the next reading; an overcount would pace).
                    if sub.receipts == readings[key]:
                        sub.backlog += 1
            for sub, event, message in dropped:
                self._deliverer.drop(sub, event, DropReason.ENCODING_FAILED, message)
            return OfferResult(
                True, queued=len(messages), skipped=skipped, dropped=[sub.key for sub, _, _ in dropped]
            )
        finally:
            for sub, reading in reserved:
                if sub.receipts == reading:  # else a newer reading replaced the reservation
                    sub.backlog -= 1  # the reservation; store counted what it stored

    def _may_pace(self, plan: Sequence[tuple[ResourceKey, E]]) -> bool:
        """False when :meth:`_pace` would not wait for ``plan``: no subscription of it has waiters or a
        backlog at the pace limit (True does not mean it waits: _pace also looks at delivery progress)."""
        limit = self.settings.pace_backlog
        if limit <= 0 or self.settings.pace_wait <= 0:
            return False
        subs = self._subs
        for key, _ in plan:
            sub = subs.get(key)
            if sub is not None and (sub.pace_waiters or sub.backlog >= limit):
                return True
        return False

    async def _pace(
        self,
        plan: Sequence[tuple[ResourceKey, E]],
        reserved: list[tuple[_Subscription, int]],
        deadline: float | None = None,
    ) -> None:
        """Give delivery its share of the event loop: wait while a subscription of ``plan`` that is
        delivering has ``pace_backlog`` or more stored deliveries waiting, until its deliveries make
        room (oldest waiter first) or ``pace_wait`` passed; then the request is stored anyway.

        Intake and delivery share one event loop, and intake has many senders while delivery has at most
        ``maxConcurrency`` attempts in flight: unpaced, the senders take most of the loop and the backlog
        only grows. A subscription that is not delivering (its subscriber is down, every attempt waits in
        backoff) is not paced: the stream stores its backlog, which is what it is for. Adds to
        ``reserved`` the subscriptions whose room was reserved for this request, each with the backlog
        reading the reservation counts in (release with ``backlog -= 1`` while that reading is the
        latest), also when the wait is cancelled. The wait ends by ``deadline`` (the store's) too."""
        limit = self.settings.pace_backlog
        if limit <= 0 or self.settings.pace_wait <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        paced = [
            sub
            for sub in {self._subs[key] for key, _ in plan if key in self._subs}
            if now - sub.finished_at < _PACE_PROGRESS and (sub.pace_waiters or sub.backlog >= limit)
        ]
        until = now + self.settings.pace_wait
        if deadline is not None and deadline < until:
            until = deadline
        for sub in paced:
            waiter: asyncio.Future[int] = loop.create_future()
            sub.pace_waiters.append(waiter)
            # The deadline answers the waiter itself (no asyncio.timeout: one that fires just as the
            # waiter is woken could leave a cancellation behind in this task; no asyncio.wait: a
            # second future and callbacks per paced request), and all paced requests share one timer.
            self._pace_deadlines.add(waiter, until, loop)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()  # _release skips it
                elif not waiter.cancelled() and waiter.result() != _WAITED_ENOUGH:
                    reserved.append((sub, waiter.result()))  # _release counted it in the backlog

    def _release(self, sub: _Subscription) -> None:
        """Let waiting requests in, oldest first, while the backlog is below the pace limit."""
        limit = self.settings.pace_backlog
        waiters = sub.pace_waiters
        while waiters and sub.backlog < limit:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(sub.receipts)
                sub.backlog += 1  # reserved for that request until it stored

    async def _consumers_live(
        self, messages: Sequence[tuple[ResourceKey, Prepared]], deadline: float | None = None
    ) -> None:
        """Interest retention keeps a message only for consumers that exist when it is stored: wait
        (bounded by ``publish_timeout`` and ``deadline``) until every addressed subscription's consumer
        does, else refuse (503) naming them. Whichever bound ends the wait, what the request waited for
        is JetStream setting up delivery, not room: BusUnavailableError, not the caller's TimeoutError
        (with ``submit_timeout`` and ``publish_timeout`` both 5 s the deadline nearly always comes first,
        and the sender would read "delivery queues are full")."""
        waiting = {key: self._subs[key] for key, _ in messages if not self._subs[key].consumer_ready.is_set()}
        if not waiting:
            return
        within, _ = self._within(deadline)
        try:
            async with asyncio.timeout(within):
                for sub in waiting.values():
                    await sub.consumer_ready.wait()
        except TimeoutError:
            names = ", ".join(sorted(key.namespaced_name for key in waiting))
            raise BusUnavailableError(
                f"the event bus is still setting up delivery to {names}", _RETRY_AFTER
            ) from None

    def _within(self, deadline: float | None) -> tuple[float, bool]:
        """Seconds to wait for JetStream (``publish_timeout``, or less to end by ``deadline``), and whether
        ``deadline`` is what ends it (then its timeout is the caller's, not JetStream's)."""
        within = self.settings.publish_timeout
        if deadline is not None:
            left = deadline - asyncio.get_running_loop().time()
            if left < within:
                return max(left, 0.0), True
        return within, False

    async def _publish(
        self, messages: Sequence[tuple[ResourceKey, Prepared]], msg_id: str, deadline: float | None = None
    ) -> None:
        nc, js = self._nc, self._js
        if nc is None or js is None or not self.ready or not nc.is_connected:
            raise BusUnavailableError(self.readiness_detail or "not connected to NATS", _RETRY_AFTER)
        limit = nc.max_payload
        for _, prepared in messages:
            if len(prepared.body) > limit:
                raise EventTooLargeError(
                    f"the event needs {len(prepared.body)} bytes; the event bus takes at most {limit}"
                )
        within, by_deadline = self._within(deadline)
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        pause = _NO_RESPONDERS_FIRST_PAUSE
        while True:
            try:
                await self._publish_once(nc, messages, msg_id, within)
                return
            except nats.errors.NoRespondersError:
                # No stream took it: the stream's interest in the subject has not reached the server this
                # connection uses yet (just after the stream was made, or a change in the cluster). Nothing
                # was stored, so it is sent again (same message id) after a short pause, within the bound.
                within = end - loop.time() - pause
                if within <= 0:
                    raise BusUnavailableError(
                        "the event bus did not confirm storing the request: NoRespondersError", _RETRY_AFTER
                    ) from None
                await asyncio.sleep(pause)
                pause = min(2 * pause, _NO_RESPONDERS_LAST_PAUSE)
                if self._nc is not nc or not nc.is_connected:
                    detail = self.readiness_detail or "not connected to NATS"
                    raise BusUnavailableError(detail, _RETRY_AFTER) from None
            except BusUnavailableError:
                raise
            except TimeoutError:
                if by_deadline:
                    raise  # the caller's deadline, not JetStream's silence
                raise BusUnavailableError(
                    "the event bus did not confirm storing the request: TimeoutError", _RETRY_AFTER
                ) from None
            except (nats.errors.Error, OSError, ValueError) as failure:
                raise BusUnavailableError(
                    f"the event bus did not confirm storing the request: {type(failure).__name__}",
                    _RETRY_AFTER,
                ) from None

    async def _publish_once(
        self, nc: NatsClient, messages: Sequence[tuple[ResourceKey, Prepared]], msg_id: str, within: float
    ) -> None:
        """One attempt of :meth:`_publish`: the messages sent, the PubAck read within ``within`` seconds."""
        # The publish acknowledgement (PubAck) is read here rather than by JetStreamContext.publish:
        # only its error matters (nats-py would build a PubAck object per request).
        before: list[tuple[str, bytes, dict[str, str]]] = []
        if len(messages) == 1:
            key, prepared = messages[0]
            subject, body = delivery_subject(self._prefix, key), prepared.body
            headers = {META_HEADER: encode_meta(prepared), MSG_ID_HEADER: msg_id}
            stored_before = None
        else:
            batch = uuid.uuid4().hex  # a new batch per attempt: a batch never committed is dropped by NATS
            for number, (key, prepared) in enumerate(messages, 1):
                before.append(
                    (
                        delivery_subject(self._prefix, key),
                        prepared.body,
                        {
                            META_HEADER: encode_meta(prepared),
                            "Nats-Batch-Id": batch,
                            "Nats-Batch-Sequence": str(number),
                        },
                    )
                )
            subject, body, headers = before.pop()
            headers["Nats-Batch-Commit"] = "1"
            headers[MSG_ID_HEADER] = msg_id
            stored_before = _DUPLICATE_IN_BATCH
        if isinstance(nc, _CoalescingClient):  # the bus's own connection: _request inline
            token, waiter = self._ask(nc, before, subject, body, headers, within)
            try:
                answer = await waiter
            except BaseException:
                self._forget(token, waiter)
                raise
            data = _ack_data(answer)
        else:
            data = await self._request(nc, subject, body, headers, within, before)
        _raise_refusal(data, stored_before)

    def _ask(
        self,
        nc: _CoalescingClient,
        before: Sequence[tuple[str, bytes, dict[str, str]]],
        subject: str,
        body: bytes,
        headers: dict[str, str],
        within: float,
    ) -> tuple[str, asyncio.Future[Msg]]:
        """Write ``before`` and then, with a reply subject, this message at the end of this loop turn
        (:meth:`_send_soon`); return the reply's token and the future its answer (the PubAck) resolves,
        or TimeoutError after ``within`` seconds. Who awaits it must :meth:`_forget` it when the wait
        ends otherwise (an answer removes it itself)."""
        token, waiter = self._expect_answer(within)
        outgoing: list[_Outgoing] = [(s, b, "", h) for s, b, h in before]
        outgoing.append((subject, body, self._ack_prefix + token, headers))
        self._send_soon(nc, outgoing, waiter)
        return token, waiter

    def _expect_answer(self, within: float) -> tuple[str, asyncio.Future[Msg]]:
        """A new reply token and the future its answer resolves, timed out after ``within`` seconds (all
        requests share one timer: :class:`~openconnector.delivery.deadlines.SharedDeadlines`).

        nats-py's ``request`` does the same with a random token (a NUID and ``token_hex``, an os.urandom
        call) and ``asyncio.wait_for`` (two more futures and callbacks) per request; here the token is a
        counter under this bus's random prefix."""
        token = str(next(self._ack_numbers))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Msg] = loop.create_future()
        self._ack_waiters[token] = waiter
        self._ack_deadlines.add(waiter, loop.time() + within, loop)
        return token, waiter

    def _forget(self, token: str, waiter: asyncio.Future[Msg]) -> None:
        """The wait for ``token``'s answer ended without it (timed out, cancelled, failed to send)."""
        self._ack_waiters.pop(token, None)
        if not waiter.done():
            waiter.cancel()  # its deadline entry is dropped, and _send_outbox skips it

    async def _request(
        self,
        nc: NatsClient,
        subject: str,
        body: bytes,
        headers: dict[str, str],
        within: float,
        before: Sequence[tuple[str, bytes, dict[str, str]]] = (),
    ) -> bytes:
        """Publish ``before`` (subject, body, headers each) and then, with a reply subject, this message;
        return the answer (the PubAck) within ``within`` seconds. On the bus's connection the messages
        are written at the end of this loop turn, after what the message log recorded meanwhile (see
        :meth:`_send_soon`)."""
        if isinstance(nc, _CoalescingClient):
            token, waiter = self._ask(nc, before, subject, body, headers, within)
        else:  # a plain nats-py client
            token, waiter = self._expect_answer(within)
        try:
            if not isinstance(nc, _CoalescingClient):
                for earlier_subject, earlier_body, earlier_headers in before:
                    await nc.publish(earlier_subject, earlier_body, headers=earlier_headers)
                await nc.publish(subject, body, reply=self._ack_prefix + token, headers=headers)
            answer = await waiter
        except BaseException:
            self._forget(token, waiter)
            raise
        return _ack_data(answer)

    def _send_soon(
        self, nc: _CoalescingClient, messages: list[_Outgoing], waiter: asyncio.Future[Msg]
    ) -> None:
        """Write ``messages`` (one request's deliveries, its PubAck to answer ``waiter``) at the end of this
        loop turn, with those of the other requests stored in it, after the message log handed over what it
        recorded (:meth:`before_publish`). Then the records of all those requests share one message-log
        message per subscription, and no request waits for that hand-over before it is stored: it waits
        only for its PubAck (the 202 still comes only once JetStream stored the request)."""
        self._outbox.append((nc, messages, waiter))
        if not self._outbox_scheduled:
            self._outbox_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_outbox)

    def _send_outbox(self) -> None:
        self._outbox_scheduled = False
        outbox, self._outbox = self._outbox, []
        for hand_over in self._before_publish:
            try:
                hand_over()
            except Exception:  # the message log is best effort; the deliveries go anyway
                logger.exception("handing the message log over before storing deliveries failed")
        for nc, messages, waiter in outbox:
            if waiter.done():  # timed out or cancelled meanwhile: the sender is refused, nothing is stored
                continue
            try:
                for subject, body, reply, headers in messages:
                    backpressure = nc.publish_now(subject, body, reply, headers)
                    if backpressure is not None:  # (the pending buffer is over its bound: flush it)
                        self._spawn(backpressure, "jetstream-flush")
            except Exception as failure:  # as publish would have raised it to the request (_publish maps it)
                waiter.set_exception(failure)

    def _acknowledge(self, message: Msg) -> None:
        waiter = self._ack_waiters.pop(message.subject[len(self._ack_prefix) :], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def _acknowledged(self, message: Msg) -> None:
        self._acknowledge(message)

    async def wait_for_room(self, keys: Collection[ResourceKey], *, needed_bytes: int = 0) -> None:
        """JetStream has no local room to wait for: a full stream refuses (503) instead."""
        return

    async def submit(self, target: DeliveryTarget | ResourceKey, event: E) -> None:
        """Store ``event`` for the installed target with ``target``'s key (raises like :meth:`store`)."""
        key = target.key if isinstance(target, DeliveryTarget) else target
        if key not in self._subs:
            raise DeliveryClosedError(f"no delivery target {key} is installed")
        result = await self.store([(key, event)])
        if result.too_large:
            raise EventTooLargeError(result.detail)

    async def join(self, key: ResourceKey | None = None) -> None:
        """Wait until ``key`` (or every target) has nothing stored unfinished and nothing in flight
        here (polls the consumers; bound it with ``asyncio.timeout``)."""
        await self._provisioned.wait()
        js = self._jetstream()
        keys = [key] if key is not None else list(self._subs)
        for name in keys:
            sub = self._sub(name)
            await sub.consumer_ready.wait()
            while True:
                info = await js.consumer_info(self.settings.stream, consumer_name(name))
                sub.pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                if sub.pending == 0 and not sub.in_flight:
                    break
                await asyncio.sleep(0.02)

    # ----------------------------------------------------------------------------- receiving

    def _start_receiving(self, sub: _Subscription) -> None:
        if sub.receiver is None and not sub.closed and not self._closed:
            sub.receiver = self._spawn(self._receive_forever(sub), f"jetstream-receive:{sub.key}")

    async def _stop_receiving(self, sub: _Subscription, deadline: float) -> None:
        sub.closed = True
        while sub.pace_waiters:  # no room will be made here any more: let them go (store skips sub)
            waiter = sub.pace_waiters.popleft()
            if not waiter.done():
                waiter.set_result(sub.receipts)
                sub.backlog += 1
        if sub.receiver is not None:
            sub.receiver.cancel()
            await _bounded_wait({sub.receiver}, f"the receiver of {sub.key}")
        if sub.in_flight:
            await asyncio.wait(set(sub.in_flight), timeout=max(deadline, 0.001))
        for task in list(sub.in_flight):  # left stored: redelivered after AckWait
            task.cancel()

    async def _ensure_consumer(self, sub: _Subscription) -> None:
        """Create the subscription's consumer, or bring its settings in line (keeping its start)."""
        js = self._jetstream()
        name = consumer_name(sub.key)
        start = datetime.datetime.fromtimestamp(sub.live_since - 1.0, datetime.UTC)
        for last_try in (False, True):
            deliver_policy, opt_start_time = DeliverPolicy.BY_START_TIME, start
            with contextlib.suppress(nats.js.errors.NotFoundError):
                existing = await js.consumer_info(self.settings.stream, name)
                deliver_policy = existing.config.deliver_policy or deliver_policy
                opt_start_time = existing.config.opt_start_time
            try:
                await self._add_consumer(sub, deliver_policy, opt_start_time)
                return
            except nats.js.errors.APIError:
                if last_try:
                    raise  # else: another process created it just now, with its start: take that

    async def _add_consumer(
        self, sub: _Subscription, deliver_policy: DeliverPolicy, opt_start_time: datetime.datetime | None
    ) -> None:
        js = self._jetstream()
        name = consumer_name(sub.key)
        settings = consumer_settings(sub.target)
        await js.add_consumer(
            self.settings.stream,
            ConsumerConfig(
                durable_name=name,
                deliver_subject=self._deliver_subject(sub.key),
                deliver_group=name,
                filter_subject=delivery_subject(self._prefix, sub.key),
                deliver_policy=deliver_policy,
                opt_start_time=opt_start_time,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=settings.ack_wait,
                max_deliver=settings.max_deliver,
                max_ack_pending=settings.max_ack_pending,
            ),
        )

    async def _reconfigure_consumer(self, sub: _Subscription) -> None:
        try:
            await self._ensure_consumer(sub)
        except Exception as failure:
            logger.warning("updating the consumer of %s failed: %s", sub.key, failure)

    def _deliver_subject(self, key: ResourceKey) -> str:
        return f"_OC_DELIVER.{self._prefix}.{consumer_name(key)}"

    async def _receive_forever(self, sub: _Subscription) -> None:
        """Receive this subscription's messages while it is installed, one task per message.

        The consumer pushes to a deliver subject that every gateway process subscribes to in one queue
        group, so NATS hands each message to one process, as soon as it is stored (no fetch round trip),
        and MaxAckPending = ``maxConcurrency`` bounds the attempts in flight across all of them.
        """
        await self._load_state(sub)
        nc = self._nc
        assert nc is not None

        def received(message: Msg) -> None:
            if sub.closed:
                return  # not ours any more: redelivered after AckWait (or dropped with the consumer)
            counts = _delivery_counts(message.reply)
            if counts is not None:
                # The consumer's undelivered backlog, from the server, whichever process stored it.
                sub.backlog = counts[1]
                sub.receipts += 1
            if sub.pace_waiters:
                self._release(sub)
            task = asyncio.ensure_future(self._handle(sub, message, 1 if counts is None else counts[0]))
            sub.in_flight.add(task)
            task.add_done_callback(sub.in_flight.discard)

        # Join the queue group first: whichever process creates the consumer, this one takes its share.
        subscription = await nc.subscribe_direct(
            self._deliver_subject(sub.key), received, queue=consumer_name(sub.key)
        )
        while not sub.closed:
            try:
                await self._ensure_consumer(sub)
                break
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
                raise
            except Exception as failure:
                logger.debug("creating the consumer of %s failed: %s; retrying", sub.key, failure)
                await asyncio.sleep(_RECONNECT_WAIT)
        sub.consumer_ready.set()
        try:
            while True:  # until cancelled by _stop_receiving; meanwhile keep the backlog figure fresh
                await asyncio.sleep(_PENDING_REFRESH)
                with contextlib.suppress(Exception):
                    info = await self._jetstream().consumer_info(self.settings.stream, consumer_name(sub.key))
                    sub.pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _handle(self, sub: _Subscription, message: Msg, attempt: int) -> None:
        """One delivery attempt (number ``attempt``) of one stored message, then ack or NAK it."""
        try:
            prepared = decode_meta(
                message.headers.get(META_HEADER, "") if message.headers else "", message.data
            )
        except ValueError as error:
            why = f"a stored message is not a delivery ({error})"
            sub.health.record_dropped(DropReason.INTERNAL, why)
            logger.error("dropped a message on %s for %s: %s", message.subject, sub.key, why)
            self._deliverer.report_outcome(sub.key, "", FinalOutcome.DROPPED, DropReason.INTERNAL)
            await _quietly(message.term())
            return
        working = sub.working
        token = id(message)
        working[token] = [message, asyncio.get_running_loop().time()]  # see _keep_alive_forever
        try:
            converted: dict[ContentMode, tuple[Mapping[str, str], bytes]] = {}
            deliverer = self._deliverer
            # (give_up_if_paused answers False at once when not paused: no coroutine for that)
            if sub.health.paused and await deliverer.give_up_if_paused(sub, prepared, None):
                delay: float | None = None
            elif attempt > sub.target.policy.retries + 1:
                # The last attempt's process died before it finished: finish the event now.
                await deliverer.give_up(
                    sub, prepared, None, f"retries exhausted after {attempt - 1} attempt(s)"
                )
                delay = None
            else:
                delay, _ = await deliverer.try_once(sub, prepared, attempt, converted)
        except asyncio.CancelledError:
            # Shutdown or removal past its deadline: hand the message back at once (the next
            # process need not wait for AckWait); it stays stored either way.
            working.pop(token, None)
            await _quietly(message.nak())
            raise
        except Exception as error:  # a bug must not lose the event silently
            logger.exception("delivery of event %s to %s failed unexpectedly", prepared.id, sub.key)
            self._deliverer.drop(
                sub, prepared, DropReason.INTERNAL, f"internal error: {type(error).__name__}"
            )
            delay = None
        finally:
            working.pop(token, None)
        if delay is None:
            sub.finished_at = asyncio.get_running_loop().time()
            answer = _settle_now(message, _ACK)
        else:
            answer = _settle_now(message, _nak_payload(nak_delay(delay)))
        if answer is not None:
            await _quietly(answer)

    async def _keep_alive_forever(self) -> None:
        """Tell JetStream that long attempts (or dead letters) are still being worked on, so they are
        not redelivered meanwhile: every ``_KEEPALIVE_SWEEP`` seconds, ``in_progress()`` for each message
        JetStream has not heard of for a third of its AckWait. (One sweep for all, not a timer per
        message: almost every attempt finishes long before; the gap stays below AckWait because
        AckWait = timeout + 5 s > 1.5 × the sweep.)"""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_KEEPALIVE_SWEEP)
            now = loop.time()
            for sub in list(self._subs.values()):
                if not sub.working:
                    continue
                interval = max(consumer_settings(sub.target).ack_wait / 3, 0.5)
                for entry in list(sub.working.values()):
                    if now - entry[1] >= interval:
                        entry[1] = now
                        self._spawn(_quietly(entry[0].in_progress()), "jetstream-in-progress")

    # ----------------------------------------------------------------------- shared state

    async def _load_state(self, sub: _Subscription) -> None:
        """What previous processes left: a suspension, and the recent attempt log."""
        with contextlib.suppress(Exception):
            await self._apply_suspension(sub)
        with contextlib.suppress(Exception):
            for attempt in await self._read_attempts(sub.key):
                AttemptLog.append(sub.attempts, attempt)  # already stored: not published again

    async def _apply_suspension(self, sub: _Subscription) -> None:
        if self._suspensions is None:
            return
        try:
            entry = await self._suspensions.get(subscription_names(sub.key).token)
        except nats.js.errors.KeyNotFoundError:
            return
        self._suspend_from(sub, entry.value or b"")

    def _suspend_from(self, sub: _Subscription, value: bytes) -> None:
        try:
            record = json.loads(value)
            reason, message, fingerprint = record["reason"], record["message"], record["fingerprint"]
            health_reason = HealthReason(reason)
        except (KeyError, TypeError, ValueError):
            return
        if fingerprint != suspension_fingerprint(sub.target):
            return  # suspended under another configuration: the spec changed since
        if sub.health.pause(health_reason, str(message)):
            logger.warning("delivery to %s suspended (%s): %s", sub.key, reason, message)

    async def _watch_suspensions(self) -> None:
        """Follow suspensions and resumptions made by other processes."""
        while not self._closed and self._suspensions is not None:
            watcher: KeyValue.KeyWatcher | None = None
            try:
                watcher = self._watcher = await self._suspensions.watchall(include_history=False)
                if self._closed:
                    return  # closed while the watcher was set up (the finally stops it)
                async for entry in watcher:
                    if entry is None:
                        continue
                    key = next((k for k in self._subs if subscription_names(k).token == entry.key), None)
                    if key is None:
                        continue
                    sub = self._subs[key]
                    revision = entry.revision or 0
                    sub.revision_seen = max(sub.revision_seen, revision)
                    if revision <= sub.revision_floor:
                        continue
                    if entry.operation in ("DEL", "PURGE"):
                        if sub.health.paused:
                            sub.health.resume()
                            logger.info("delivery to %s resumed", key)
                    else:
                        self._suspend_from(sub, entry.value or b"")
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                logger.debug("watching suspensions failed: %s; retrying", failure)
                await asyncio.sleep(_RECONNECT_WAIT)
            finally:
                if watcher is not None:  # its ordered consumer would otherwise live on the connection
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(_CLOSE_BOUND):
                            await watcher.stop()  # type: ignore[no-untyped-call]

    async def _listen_for_max_deliveries(self) -> None:
        """Count what JetStream stopped redelivering as dropped (``maxDeliveries``).

        MaxDeliver = retries + 2, and the extra delivery finishes an event whose last attempt was cut
        off; only when the process of that extra delivery dies too does the server give up, with an
        advisory on ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`` and nothing else.
        Every process listens in one queue group, so one of them counts it, once. An advisory is a plain
        NATS message: one sent while no gateway is connected goes uncounted (see docs/operations.md).
        """
        nc = self._nc
        assert nc is not None
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.settings.stream}.*"

        async def received(message: Msg) -> None:
            self._spawn(self._count_max_deliveries(message.data), "jetstream-max-deliveries-count")

        # nats-py keeps the subscription across reconnects and ends it when the connection closes.
        await nc.subscribe(subject, queue=f"_OC_ADVISORY.{self._prefix}", cb=received)

    async def _count_max_deliveries(self, data: bytes) -> None:
        try:
            advisory = json.loads(data)
            consumer, sequence = str(advisory["consumer"]), int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", 0))
        except (KeyError, TypeError, ValueError):
            logger.debug("ignored a max-deliveries advisory that is not one: %r", data[:200])
            return
        sub = next((s for k, s in self._subs.items() if consumer_name(k) == consumer), None)
        if sub is None:
            logger.warning("stream message %d of consumer %s was given up by JetStream", sequence, consumer)
            return
        event_id = ""
        with contextlib.suppress(Exception):  # best effort: the id for the log, and the space back
            js = self._jetstream()
            stored = await js.get_msg(self.settings.stream, sequence)
            event_id = decode_meta((stored.headers or {}).get(META_HEADER, ""), stored.data or b"").id
            # Given up is not acked: an interest stream would keep the message until max-age.
            await js.delete_msg(self.settings.stream, sequence)
        why = f"JetStream stopped redelivering stream message {sequence} after {deliveries} deliveries"
        sub.health.record_dropped(DropReason.MAX_DELIVERIES, why)
        logger.error("dropped event %s for %s: %s", event_id or "(unknown id)", sub.key, why)
        self._deliverer.report_outcome(sub.key, event_id, FinalOutcome.DROPPED, DropReason.MAX_DELIVERIES)

    def _on_stop(self, state: DeliveryState, reason: str, message: str) -> None:
        """A subscription stopped delivering (410, auto-pause): tell every process, durably."""
        if self._suspensions is None:
            return
        record = json.dumps(
            {"reason": reason, "message": message, "fingerprint": suspension_fingerprint(state.target)}
        ).encode()
        self._spawn(self._store_suspension(state.key, record), "jetstream-suspend")

    async def _store_suspension(self, key: ResourceKey, record: bytes) -> None:
        if self._suspensions is None:
            return
        try:
            revision = await self._suspensions.put(subscription_names(key).token, record)
        except Exception as failure:
            logger.warning("storing the suspension of %s failed: %s", key, failure)
            return
        sub = self._subs.get(key)
        if sub is not None:
            sub.revision_floor = max(sub.revision_floor, revision)

    async def _forget_suspension(self, key: ResourceKey) -> None:
        if self._suspensions is not None:
            with contextlib.suppress(Exception):
                await self._suspensions.delete(subscription_names(key).token)

    def record_attempt_durably(self, key: ResourceKey, attempt: Attempt) -> None:
        """Append ``attempt`` to ``key``'s attempt log in JetStream (no wait for the acknowledgement;
        published within ``_ATTEMPT_FLUSH_DELAY`` seconds, or when the bus closes)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        self._attempt_backlog.append((f"{self._attempt_prefix}.{subscription_names(key).token}", attempt))
        if self._attempt_flusher is None or self._attempt_flusher.done():
            self._attempt_flusher = self._spawn(self._flush_attempts_later(), "jetstream-attempts")

    async def _flush_attempts_later(self) -> None:
        await asyncio.sleep(_ATTEMPT_FLUSH_DELAY)
        await self._flush_attempts()

    async def _flush_attempts(self) -> None:
        """Publish the recorded attempts: those of one subscription as one message (the stream keeps
        the last messages per subscription, readers the last ``DEFAULT_ATTEMPT_LOG_SIZE`` attempts, so
        a message carries at most that many: the newest)."""
        while self._attempt_backlog and self._nc is not None:
            batch, self._attempt_backlog = self._attempt_backlog, []
            by_subject: dict[str, list[Attempt]] = {}
            for subject, attempt in batch:
                by_subject.setdefault(subject, []).append(attempt)
            for subject, attempts in by_subject.items():
                record = attempts_to_record(attempts[-DEFAULT_ATTEMPT_LOG_SIZE:])
                await _quietly(self._nc.publish(subject, record))

    async def _read_attempts(self, key: ResourceKey) -> list[Attempt]:
        js = self._jetstream()
        subject = f"{self._attempt_prefix}.{subscription_names(key).token}"
        pull = await js.pull_subscribe(
            subject,
            durable=None,
            stream=self._attempt_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=5.0
            ),
        )
        found: list[Attempt] = []
        try:
            with contextlib.suppress(nats.errors.TimeoutError):
                for message in await pull.fetch(DEFAULT_ATTEMPT_LOG_SIZE, timeout=0.5):
                    found.extend(attempts_from_record(message.data))
        finally:
            with contextlib.suppress(Exception):
                await pull.unsubscribe()
        return found[-DEFAULT_ATTEMPT_LOG_SIZE:]


class JetStreamReplayStore:
    """Standard Webhooks replay-guard ids in a KV bucket: a ``webhook-id`` accepted by any process is
    refused as a replay by every process, also after a restart, until its TTL passes."""

    def __init__(self, bus: JetStreamBus[Any]) -> None:
        self._bus = bus

    def _bucket(self) -> KeyValue:
        bucket = self._bus.replay_bucket
        if bucket is None or not self._bus.ready:
            raise BusUnavailableError(self._bus.readiness_detail or "the replay store is not available")
        return bucket

    async def remember(self, key: str, *, now: float, ttl: float) -> bool:
        """Remember ``key`` for ``ttl`` seconds; False when it is remembered already (a replay).

        A bus that cannot answer refuses the request (503 + Retry-After): accepting it unchecked could let
        a replay through, refusing it as a replay would lose a fresh message."""
        try:
            bucket = self._bucket()
            await bucket.create(_replay_key(key), b"", msg_ttl=max(1.0, ttl))
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except BusUnavailableError as error:
            raise _bus_refusal(error.detail, error.retry_after) from None
        except (nats.errors.Error, TimeoutError) as failure:
            raise _bus_refusal(f"the replay store did not answer: {type(failure).__name__}", 5) from None
        return True

    async def forget(self, key: str) -> None:
        with contextlib.suppress(Exception):
            await self._bucket().purge(_replay_key(key))


def _bus_refusal(detail: str, retry_after: int) -> Refusal:
    headers = {"Retry-After": str(max(1, retry_after))}
    return Refusal(503, "bus-unavailable", detail, headers=headers)


def _raise_refusal(answer: bytes, stored_before: int | None = None) -> None:
    """Raise :class:`BusUnavailableError` when JetStream's answer to a publish is an error (other than
    ``stored_before``, an error code that means the request is stored already)."""
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        raise BusUnavailableError(
            "the event bus did not confirm storing the request: an answer that is not JSON", _RETRY_AFTER
        ) from None
    problem = document.get("error") if isinstance(document, dict) else None
    if not problem:
        return
    if isinstance(problem, dict):
        if stored_before is not None and problem.get("err_code") == stored_before:
            return
        description = str(problem.get("description") or "error")
    else:
        description = str(problem)
    raise BusUnavailableError(
        f"the event bus refused to store the request: {clip(description)}", _RETRY_AFTER
    )


def _replay_key(key: str) -> str:
    return _REPLAY_KEY_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


# A message to write: subject, body, reply subject ("" for none), headers.
_Outgoing = tuple[str, bytes, str, dict[str, str]]

_WAITED_ENOUGH = -1  # a pace waiter's answer at its deadline (a backlog reading is never negative)


def _ack_data(answer: Msg) -> bytes:
    """The body of JetStream's answer to a publish; NoRespondersError when no stream took it."""
    if not answer.data and answer.headers and answer.headers.get("Status") == NO_RESPONDERS_STATUS:
        raise nats.errors.NoRespondersError
    return answer.data


def _time_out(waiter: asyncio.Future[Msg]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _stop_waiting(waiter: asyncio.Future[int]) -> None:
    if not waiter.done():  # _release skips it from now on
        waiter.set_result(_WAITED_ENOUGH)


def _delivery_counts(reply: str | None) -> tuple[int, int] | None:
    """(number of deliveries, consumer's pending count) from a JetStream message's reply subject, or
    None when it is not one: nats-py's ``Msg.metadata`` parses the same tokens but also builds a
    datetime and three objects per message, of which delivery needs these two numbers."""
    if not reply:
        return None
    tokens = reply.split(".")
    try:
        if len(tokens) == _ACK_V1_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
            return int(tokens[4]), int(tokens[8])
        if len(tokens) >= _ACK_V1_TOKENS + 2 and tokens[0] == "$JS" and tokens[1] == "ACK":
            return int(tokens[Msg.Ack.NumDelivered]), int(tokens[Msg.Ack.NumPending])
    except ValueError:
        return None
    return None


_ACK = b""  # what Msg.ack() publishes on the reply subject


def _nak_payload(delay: float) -> bytes:
    """What ``Msg.nak(delay=delay)`` publishes on the reply subject."""
    payload = Msg.Ack.Nak
    if delay:
        payload += b" " + json.dumps({"delay": int(delay * 10**9)}).encode()
    return payload


def _settle_now(message: Msg, payload: bytes) -> Awaitable[None] | None:
    """``message.ack()`` (``payload`` ``_ACK``) or ``nak(delay)`` (:func:`_nak_payload`) as a plain call on
    the bus's connection: the same checks, the same command and the message marked as answered. Best
    effort as :func:`_quietly` (a lost answer means a redelivery, which at-least-once allows); what it
    returns (a flush nats-py would wait for) is for the caller to await."""
    client = message._client
    try:
        message._check_reply()
        if isinstance(client, _CoalescingClient):
            answer = client.publish_now(message.reply, payload)
        else:  # a plain nats-py client
            answer = client.publish(message.reply, payload)
    except Exception as failure:
        logger.debug("JetStream acknowledgement failed: %s", failure)
        return None
    message._ackd = True
    return answer


async def _bounded_wait(tasks: Collection[asyncio.Task[Any]], what: str) -> None:
    """Wait for cancelled ``tasks`` to finish, at most ``_CLOSE_BOUND`` seconds: a library call that
    swallows a cancellation (nats-py's flush does) must not hang a shutdown."""
    pending = {task for task in tasks if not task.done()}
    if not pending:
        return
    done, late = await asyncio.wait(pending, timeout=_CLOSE_BOUND)
    for task in done:  # retrieved, so asyncio does not report it as never retrieved
        if not task.cancelled():
            task.exception()
    if late:
        logger.warning("%s did not stop within %.0f s; left behind", what, _CLOSE_BOUND)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    """Acks and NAKs are best effort: a lost one means a redelivery, which at-least-once allows."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception as failure:
        logger.debug("JetStream acknowledgement failed: %s", failure)


async def _bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:
        return await js.key_value(config.bucket)  # exists with other settings: use it as it is


class StreamRetentionError(RuntimeError):
    """The delivery stream exists with another retention policy (JetStream cannot change it in place)."""


async def _refuse_other_retention(js: JetStreamContext, stream: str) -> None:
    """An older gateway created the delivery stream with limits retention: say how to migrate instead
    of running on it (its delivered messages would fill max-bytes and refuse new requests)."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return
    retention = str(RetentionPolicy(info.config.retention).value) if info.config.retention else "interest"
    if retention != RetentionPolicy.INTEREST.value:
        raise StreamRetentionError(
            f"stream {stream} has {retention} retention and this gateway needs interest retention, "
            "which JetStream cannot change in place: let its pending deliveries finish (stop the intake, "
            f"watch `nats consumer report {stream}` reach 0 pending), then delete it "
            f"(`nats stream rm {stream}`) and the gateway creates it anew; or point "
            "--jetstream-stream at a new name"
        )


async def _create_or_update_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)  # exists with other settings: ours win (idempotent start-up)


#: A last sequence no stream has: a publish that expects it is refused by the stream and never stored.
_NO_SUCH_SEQUENCE = str(2**63)


async def until_stream_takes_publishes(js: JetStreamContext, subject: str, *, within: float) -> bool:
    """Wait until a stream answers publishes on ``subject`` on this connection's server; whether it did
    within ``within`` seconds. Just after a stream is made, its interest in its subjects reaches the
    other servers of a cluster a little later: until then a publish there is answered "no responders"
    (a plain publish is dropped unseen). The probe expects a last sequence the stream does not have, so
    the stream refuses it (an API error: it answered) and stores nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await js.publish(
                subject, b"", timeout=1.0, headers={"Nats-Expected-Last-Sequence": _NO_SUCH_SEQUENCE}
            )
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
            pass  # (nats-py raises the second for the first)
        except nats.js.errors.APIError:
            return True  # the stream answered
        else:
            raise RuntimeError(f"a stream stored the probe on {subject}, which expected no such sequence")
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
