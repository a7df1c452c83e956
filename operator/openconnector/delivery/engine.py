"""The delivery engine: fan-out to subscribers with retries, backoff, Retry-After and dead-lettering.

Shape
-----
One :class:`Dispatcher` per gateway process. Every subscription is a :class:`DeliveryTarget` with its
own *lane*: a bounded FIFO queue and up to ``max_concurrency`` worker tasks. Lanes share nothing but
the pooled ``aiohttp.ClientSession``, so one slow or failing subscriber never delays another. A worker
holds its event through the backoff waits, so a failing endpoint gets at most ``max_concurrency``
requests in flight and its queue fills up, instead of being hammered.

Events
------
The engine does not know the CloudEvents codec. It sees events through :class:`DeliverableEvent`
(``.id`` and ``.type``) and turns them into requests with an injected :data:`Encoder`
``(event, ContentMode) -> (headers, body)``. Dead-lettered events get the extensions ``ocerrordest``
(the target URL without query string), ``ocerrorcode`` (the last HTTP status; absent when there was no
response) and ``ocerrordata`` (base64 of the first 1 KiB of the last response body; absent when empty)
through an injected :data:`DeadLetterTransform`; the default calls ``event.with_extensions(**ext)``
(:class:`SupportsExtensions`). Dead letters are always encoded in structured mode (self-describing)
and sent without the subscriber's credentials.

Never silently lost
-------------------
Every submitted event ends as delivered, dead-lettered or dropped; drops are counted in the lane's
:class:`SubscriptionHealth`, recorded as its ``lastError`` with a reason, logged at ERROR and reported
to the observer. Secrets (auth headers, signing secret) are never logged, never put in the attempt log
or health, and ``repr(target)`` hides them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import re
import time
import types
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, Self, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.health import HealthConfig, HealthReason, SubscriptionHealth
from openconnector.delivery.policy import (
    RETRY_AFTER_STATUSES,
    DeliveryPolicy,
    Outcome,
    Rng,
    backoff_delay,
    classify,
    parse_retry_after,
    validate_http_url,
)
from openconnector.delivery.signing import decode_signing_secret, signature_headers

__all__ = [
    "ERROR_DATA_LIMIT",
    "ContentMode",
    "DeadLetterTransform",
    "DeliverableEvent",
    "DeliveryClosedError",
    "DeliveryObserver",
    "DeliveryTarget",
    "Dispatcher",
    "DropReason",
    "Encoder",
    "FinalOutcome",
    "PauseCallback",
    "SupportsExtensions",
    "extensions_transform",
    "redact_url",
]

logger = logging.getLogger("openconnector.delivery")

#: Bytes of a failed response body kept for ``ocerrordata`` (Knative's knativeerrordata does the same).
ERROR_DATA_LIMIT = 1024
#: Bytes of any response body read so the pooled connection can be reused; larger bodies close it.
_RESPONSE_READ_LIMIT = 64 * 1024
_MESSAGE_LIMIT = 300
_QUEUE_FULL_LOG_INTERVAL = 10.0

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the engine owns: the encoder sets content/ce-*, the signer webhook-*, aiohttp the framing.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
_RESERVED_PREFIXES = ("ce-", "webhook-")
_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ContentMode(StrEnum):
    """CloudEvents HTTP content mode of a delivery (values match the CRD's ``contentMode``)."""

    STRUCTURED = "structured"
    BINARY = "binary"


class DeliverableEvent(Protocol):
    """What the engine needs of an event: an id (``webhook-id``, attempt log) and a type (logs)."""

    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...


class SupportsExtensions(DeliverableEvent, Protocol):
    """An event that can return a copy of itself with extra CloudEvents extension attributes."""

    def with_extensions(self, **extensions: object) -> Self: ...


E = TypeVar("E", bound=DeliverableEvent)

#: ``(event, mode) -> (headers, body)``: the CloudEvents codec, injected (Content-Type included).
Encoder: TypeAlias = Callable[[E, ContentMode], tuple[Mapping[str, str], bytes]]
#: ``(event, extensions) -> event``: adds the dead-letter error extensions.
DeadLetterTransform: TypeAlias = Callable[[E, Mapping[str, object]], E]
#: ``(target_key, reason, message)``: the target stopped delivering (410 or auto-pause). May be async.
PauseCallback: TypeAlias = Callable[[str, str, str], Awaitable[None] | None]


def extensions_transform(event: E, extensions: Mapping[str, object]) -> E:
    """The default dead-letter transform: ``event.with_extensions(**extensions)``."""
    with_extensions = getattr(event, "with_extensions", None)
    if not callable(with_extensions):
        raise TypeError(
            f"{type(event).__name__} has no with_extensions(); pass dead_letter_transform to the Dispatcher"
        )
    return cast(E, with_extensions(**extensions))


class FinalOutcome(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "deadLettered"
    DROPPED = "dropped"


class DropReason(StrEnum):
    NO_DEAD_LETTER = "noDeadLetterSink"
    DEAD_LETTER_FAILED = "deadLetterFailed"
    QUEUE_FULL = "queueFull"
    SHUTDOWN = "shutdown"
    REMOVED = "removed"
    INTERNAL = "internalError"


class DeliveryClosedError(RuntimeError):
    """``submit`` after ``close()``, or to a target removed while the caller waited for queue space."""


class DeliveryObserver(Protocol):
    """Metrics hooks (the gateway exports Prometheus from these). Called inline: keep them cheap."""

    def on_attempt(self, target_key: str, attempt: Attempt) -> None: ...

    def on_outcome(
        self, target_key: str, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None: ...


def redact_url(url: str) -> str:
    """``url`` without user info, query string or fragment: safe for logs, status and ``ocerrordest``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<invalid url>"


def _validate_headers(headers: Mapping[str, str], field_name: str, *, allow_authorization: bool) -> None:
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{field_name}: {name!r} is not a valid HTTP header name")
        lower = name.lower()
        if lower in _RESERVED_HEADERS or lower.startswith(_RESERVED_PREFIXES):
            raise ValueError(
                f"{field_name}: header {name!r} is set by the delivery engine and cannot be overridden"
            )
        if lower == "authorization" and not allow_authorization:
            raise ValueError(
                f"{field_name}: put Authorization in auth headers (from a Secret), not plain headers"
            )
        # Say which header is wrong, but never echo a value: it may be a credential.
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"{field_name}: value of header {name!r} must be a string without CR, LF or NUL")


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One subscription's delivery configuration (immutable; replace it to change it).

    ``key`` identifies the subscription (``namespace/name``). ``headers`` are plain extra headers;
    ``auth_headers`` carry credentials resolved from Secrets (e.g. ``{"Authorization": "Bearer …"}``)
    and ``signing_secret`` a Standard Webhooks secret (``whsec_…``): both are hidden from ``repr`` and
    never logged. ``dead_letter_headers`` go to the dead-letter sink only (the subscriber's credentials
    never do). ``queue_size`` bounds the events waiting in this lane.
    """

    key: str
    url: str
    method: str = "POST"
    content_mode: ContentMode = ContentMode.STRUCTURED
    headers: Mapping[str, str] = field(default_factory=dict)
    auth_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    health: HealthConfig = field(default_factory=HealthConfig)
    max_concurrency: int = 4
    queue_size: int = 1000
    dead_letter_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    _signing_key: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("key: must be a non-empty string such as 'namespace/name'")
        validate_http_url(self.url, "url")
        if self.method not in _METHODS:
            raise ValueError(f"method: must be one of POST, PUT, PATCH, got {self.method!r}")
        try:
            object.__setattr__(self, "content_mode", ContentMode(self.content_mode))
        except ValueError:
            raise ValueError(
                f"content_mode: must be 'structured' or 'binary', got {self.content_mode!r}"
            ) from None
        for name, value in (("max_concurrency", self.max_concurrency), ("queue_size", self.queue_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        _validate_headers(self.headers, "headers", allow_authorization=False)
        _validate_headers(self.auth_headers, "auth_headers", allow_authorization=True)
        _validate_headers(self.dead_letter_headers, "dead_letter_headers", allow_authorization=True)
        # Private copies: a caller mutating its dict must not change a live target.
        object.__setattr__(self, "headers", types.MappingProxyType(dict(self.headers)))
        object.__setattr__(self, "auth_headers", types.MappingProxyType(dict(self.auth_headers)))
        object.__setattr__(
            self, "dead_letter_headers", types.MappingProxyType(dict(self.dead_letter_headers))
        )
        if self.signing_secret is not None:
            object.__setattr__(self, "_signing_key", decode_signing_secret(self.signing_secret))

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)


@dataclass(slots=True)
class _Job(Generic[E]):
    event: E


@dataclass(slots=True)
class _Response:
    """What one HTTP request produced. ``fatal`` marks errors retrying cannot fix (e.g. encoding)."""

    status: int | None
    error: str | None
    started: float
    latency_ms: float
    retry_after: str | None = None
    body_prefix: bytes = b""
    fatal: bool = False

    @property
    def outcome(self) -> Outcome:
        return Outcome.PERMANENT if self.fatal else classify(self.status, self.error)


class _Lane(Generic[E]):
    """Per-target state: queue, workers, health and attempt log. Survives target replacement."""

    def __init__(self, target: DeliveryTarget, clock: Callable[[], float]) -> None:
        self.target = target
        self.health = SubscriptionHealth(target.health, clock=clock)
        self.attempts = AttemptLog()
        self.queue: asyncio.Queue[_Job[E]] = asyncio.Queue()
        self.space_waiters: deque[asyncio.Future[None]] = deque()
        self.workers: dict[int, asyncio.Task[None]] = {}
        self.current: dict[int, _Job[E]] = {}
        self.closed = False
        self.wakeup = asyncio.Event()  # set while paused: cuts backoff waits short
        self.queue_full_logged_at = float("-inf")
        self.queue_full_suppressed = 0

    @property
    def key(self) -> str:
        return self.target.key

    def has_space(self) -> bool:
        return self.queue.qsize() < self.target.queue_size

    def wake_one(self) -> None:
        while self.space_waiters:
            waiter = self.space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        while self.space_waiters:
            waiter = self.space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class _NullObserver:
    def on_attempt(self, target_key: str, attempt: Attempt) -> None:
        pass

    def on_outcome(self, target_key: str, event_id: str, outcome: FinalOutcome, reason: str | None) -> None:
        pass


class Dispatcher(Generic[E]):
    """Delivers events to targets. Use as ``async with Dispatcher(encoder) as d:`` or call ``close()``.

    ``clock`` is Unix time (timestamps, Retry-After dates, signatures), ``sleep`` the backoff wait and
    ``rng`` the jitter source; all three are injectable for tests. A ``session`` passed in is used as
    is and not closed; otherwise one pooled session is created on first use with ``connection_limit``
    connections in total (0 = unbounded: the sum of the targets' ``max_concurrency`` is the bound).
    """

    def __init__(
        self,
        encoder: Encoder[E],
        *,
        dead_letter_transform: DeadLetterTransform[E] = extensions_transform,
        on_paused: PauseCallback | None = None,
        observer: DeliveryObserver | None = None,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 0,
        user_agent: str = "openconnector-delivery",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Rng | None = None,
    ) -> None:
        self._encoder = encoder
        self._dead_letter_transform = dead_letter_transform
        self._on_paused = on_paused
        self._observer: DeliveryObserver = observer or _NullObserver()
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit
        self._user_agent = user_agent
        self._clock = clock
        self._sleep = sleep
        self._rng: Rng = rng or random.Random()
        self._lanes: dict[str, _Lane[E]] = {}
        self._closed = False
        self._callbacks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the pooled session now (otherwise it is created on first delivery)."""
        self._ensure_session()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self, drain_deadline: float = 10.0) -> int:
        """Stop intake, let lanes finish queued and in-flight events for up to ``drain_deadline``
        seconds, then cancel and count the rest as dropped (reason ``shutdown``). Returns that count."""
        if self._closed:
            return 0
        self._closed = True
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.closed = True
            lane.wake_all()
        dropped = await asyncio.gather(
            *(self._shutdown_lane(lane, drain_deadline, DropReason.SHUTDOWN) for lane in lanes)
        )
        if self._callbacks:
            await asyncio.wait(set(self._callbacks), timeout=max(drain_deadline, 0.1))
        if self._owns_session and self._session is not None:
            await self._session.close()
        return sum(dropped)

    # --------------------------------------------------------------------------------- targets

    def set_target(self, target: DeliveryTarget) -> None:
        """Add a target or replace the one with the same key (queued events and health are kept)."""
        self.update_target(target.key, target)

    def update_target(self, key: str, target: DeliveryTarget) -> None:
        """Replace the configuration of ``key``; the next attempt of every queued or retrying event uses
        it (URL, auth, signing, policy, concurrency, queue size). Adds the target when new."""
        if target.key != key:
            raise ValueError(f"target.key: {target.key!r} does not match the key being updated {key!r}")
        if self._closed:
            raise DeliveryClosedError("the dispatcher is closed")
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = _Lane(target, self._clock)
            return
        if lane.target is target:
            return
        old = lane.target
        lane.target = target
        if target.health != old.health:
            lane.health.reconfigure(target.health)
        if lane.workers:  # started: scale workers up (scaling down happens as workers finish)
            self._ensure_workers(lane)
        lane.wake_all()  # the queue may have grown

    async def remove_target(self, key: str, *, drain_deadline: float = 10.0) -> int:
        """Stop intake for ``key``, deliver what is queued for up to ``drain_deadline`` seconds, then
        drop the rest (reason ``removed``). Returns the number dropped; 0 for an unknown key."""
        lane = self._lanes.pop(key, None)
        if lane is None:
            return 0
        lane.closed = True
        lane.wake_all()
        return await self._shutdown_lane(lane, drain_deadline, DropReason.REMOVED)

    def resume(self, key: str) -> bool:
        """Deliver to a paused target again (after its spec changed). False if it was not paused."""
        lane = self._lanes.get(key)
        if lane is None or not lane.health.paused:
            return False
        lane.health.resume()
        lane.wakeup.clear()
        logger.info("delivery to %s resumed", key)
        return True

    def target_keys(self) -> list[str]:
        return list(self._lanes)

    def target(self, key: str) -> DeliveryTarget:
        return self._lane(key).target

    def health(self, key: str) -> SubscriptionHealth:
        return self._lane(key).health

    def attempts(self, key: str) -> AttemptLog:
        return self._lane(key).attempts

    def queue_depth(self, key: str) -> int:
        """Events queued or in flight for ``key``."""
        lane = self._lane(key)
        return lane.queue.qsize() + len(lane.current)

    async def join(self, key: str | None = None) -> None:
        """Wait until ``key`` (or every target) has no queued or in-flight events."""
        lanes = [self._lane(key)] if key is not None else list(self._lanes.values())
        await asyncio.gather(*(lane.queue.join() for lane in lanes))

    # ---------------------------------------------------------------------------------- intake

    async def submit(self, target: DeliveryTarget, event: E) -> None:
        """Queue ``event`` for ``target``, waiting while its queue is full (back-pressure).

        ``target`` is registered when its key is new and replaces the registered one when it differs
        (as :meth:`update_target`). Raises :class:`DeliveryClosedError` once the dispatcher is closed
        or the target is removed while waiting. Wrap in ``asyncio.wait_for`` to bound the wait.
        """
        lane = self._intake_lane(target)
        loop = asyncio.get_running_loop()
        while not lane.has_space():
            waiter: asyncio.Future[None] = loop.create_future()
            lane.space_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    lane.wake_one()  # pass the slot we were woken for to the next waiter
                raise
            finally:
                with contextlib.suppress(ValueError):
                    lane.space_waiters.remove(waiter)
            if self._closed or lane.closed:
                raise DeliveryClosedError(f"delivery to {lane.key} stopped while waiting for queue space")
        self._enqueue(lane, event)

    def try_submit(self, target: DeliveryTarget, event: E) -> bool:
        """Queue ``event`` without waiting. When the queue is full or the dispatcher closed, the event is
        dropped, counted (reason ``queueFull``/``shutdown``), logged and reported; returns False."""
        if self._closed:
            lane = self._lanes.get(target.key)
            if lane is not None:
                lane.health.record_dropped(DropReason.SHUTDOWN, "the dispatcher is shutting down")
            logger.error("dropped event %s for %s: the dispatcher is shutting down", event.id, target.key)
            self._report_outcome(target.key, event.id, FinalOutcome.DROPPED, DropReason.SHUTDOWN)
            return False
        lane = self._intake_lane(target)
        if not lane.has_space():
            lane.health.record_dropped(DropReason.QUEUE_FULL, f"queue full ({lane.target.queue_size} events)")
            self._log_queue_full(lane, event)
            self._report_outcome(lane.key, event.id, FinalOutcome.DROPPED, DropReason.QUEUE_FULL)
            return False
        self._enqueue(lane, event)
        return True

    def _intake_lane(self, target: DeliveryTarget) -> _Lane[E]:
        if self._closed:
            raise DeliveryClosedError("the dispatcher is closed")
        lane = self._lanes.get(target.key)
        if lane is None or (lane.target is not target and lane.target != target):
            self.update_target(target.key, target)
            lane = self._lanes[target.key]
        return lane

    def _enqueue(self, lane: _Lane[E], event: E) -> None:
        lane.queue.put_nowait(_Job(event))
        self._ensure_workers(lane)

    def _log_queue_full(self, lane: _Lane[E], event: E) -> None:
        # A flood of identical ERROR lines helps nobody: one line per interval, with the count.
        now = time.monotonic()
        if now - lane.queue_full_logged_at < _QUEUE_FULL_LOG_INTERVAL:
            lane.queue_full_suppressed += 1
            return
        suppressed, lane.queue_full_suppressed = lane.queue_full_suppressed, 0
        lane.queue_full_logged_at = now
        logger.error(
            "dropped event %s for %s: queue full (%d events)%s",
            event.id,
            lane.key,
            lane.target.queue_size,
            f"; {suppressed} more dropped since the last report" if suppressed else "",
        )

    # --------------------------------------------------------------------------------- workers

    def _ensure_workers(self, lane: _Lane[E]) -> None:
        for index in range(lane.target.max_concurrency):
            if index not in lane.workers:
                task = asyncio.create_task(self._work(lane, index), name=f"delivery:{lane.key}#{index}")
                lane.workers[index] = task

    async def _work(self, lane: _Lane[E], index: int) -> None:
        try:
            while index < lane.target.max_concurrency:
                job = await lane.queue.get()
                lane.current[index] = job  # before any await: shutdown counts it as in flight
                lane.wake_one()
                try:
                    await self._deliver(lane, job)
                except asyncio.CancelledError:
                    # close()/remove_target() count their own leftovers. Anyone else cancelling us (kopf
                    # cancels tasks created after it started when it stops) must not lose it silently.
                    if not lane.closed:
                        self._drop(lane, job.event, DropReason.SHUTDOWN, "delivery task cancelled")
                    raise
                except Exception as error:  # a bug must not lose the event silently
                    logger.exception("delivery of event %s to %s failed unexpectedly", job.event.id, lane.key)
                    self._drop(
                        lane, job.event, DropReason.INTERNAL, f"internal error: {type(error).__name__}"
                    )
                finally:
                    lane.current.pop(index, None)
                    lane.queue.task_done()
        finally:
            if lane.workers.get(index) is asyncio.current_task():
                del lane.workers[index]

    async def _shutdown_lane(self, lane: _Lane[E], deadline: float, reason: DropReason) -> int:
        if deadline > 0 and (lane.queue.qsize() or lane.current):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.queue.join(), timeout=deadline)
        # No awaits from here until the workers are cancelled: the set of unfinished jobs is fixed.
        leftovers = list(lane.current.values())
        while not lane.queue.empty():
            leftovers.append(lane.queue.get_nowait())
            lane.queue.task_done()
        workers = list(lane.workers.values())
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        if leftovers:
            why = "shutdown drain deadline passed" if reason is DropReason.SHUTDOWN else "target removed"
            lane.health.record_dropped_many(len(leftovers), reason, f"{why} after {deadline:g}s")
            logger.error(
                "dropped %d undelivered events for %s (%s after %gs)", len(leftovers), lane.key, why, deadline
            )
            for job in leftovers:
                self._report_outcome(lane.key, job.event.id, FinalOutcome.DROPPED, reason)
        return len(leftovers)

    # -------------------------------------------------------------------------------- delivery

    async def _deliver(self, lane: _Lane[E], job: _Job[E]) -> None:
        event = job.event
        attempt = 0
        last: _Response | None = None
        while True:
            target = lane.target  # re-read: update_target applies to the next attempt
            pause = lane.health.pause_reason
            if pause is not None:
                await self._give_up(lane, event, last, f"delivery paused ({pause[0]}): {pause[1]}")
                return
            attempt += 1
            is_retry = attempt > 1
            last = response = await self._attempt_subscriber(target, event)
            outcome = response.outcome
            if outcome is Outcome.SUCCESS:
                assert response.status is not None
                lane.health.record_success(response.status, response.latency_ms, retry=is_retry)
                self._record_attempt(lane, event, attempt, response, outcome, Destination.SUBSCRIBER)
                self._report_outcome(lane.key, event.id, FinalOutcome.DELIVERED, None)
                return
            message = _describe(response)
            lane.health.record_attempt_failure(response.status, message, retry=is_retry)
            policy = target.policy
            if outcome is Outcome.RETRYABLE and attempt <= policy.retries:
                delay = self._retry_delay(policy, attempt, response)
                self._record_attempt(lane, event, attempt, response, outcome, Destination.SUBSCRIBER, delay)
                # DEBUG: during an outage this fires per attempt; health, metrics and the attempt log
                # carry the signal, and dead-letters (WARNING) and drops (ERROR) are logged anyway.
                logger.debug(
                    "event %s to %s: attempt %d failed (%s); retrying in %.3fs",
                    event.id,
                    lane.key,
                    attempt,
                    message,
                    delay,
                )
                await self._backoff(lane, delay)
                continue
            self._record_attempt(lane, event, attempt, response, outcome, Destination.SUBSCRIBER)
            if outcome is Outcome.GONE:
                self._pause(lane, HealthReason.ENDPOINT_GONE, f"{target.redacted_url} answered 410 Gone")
            verdict = "retries exhausted" if outcome is Outcome.RETRYABLE else "not retried"
            why = f"{verdict} after {attempt} attempt(s): {message}"
            await self._give_up(lane, event, response, why)
            return

    def _retry_delay(self, policy: DeliveryPolicy, attempt: int, response: _Response) -> float:
        delay = backoff_delay(policy, attempt, self._rng)
        if response.status in RETRY_AFTER_STATUSES:
            requested = parse_retry_after(response.retry_after, self._clock(), policy.max_retry_after)
            if requested is not None:
                delay = max(delay, requested)
        return delay

    async def _backoff(self, lane: _Lane[E], delay: float) -> None:
        """Wait ``delay`` seconds, or less if the target gets paused meanwhile."""
        if lane.wakeup.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(lane.wakeup.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _attempt_subscriber(self, target: DeliveryTarget, event: E) -> _Response:
        try:
            encoded_headers, body = self._encoder(event, target.content_mode)
        except Exception as error:
            return self._fatal(f"encoding failed: {type(error).__name__}: {_clip(str(error))}")
        headers = dict(target.headers)
        headers.update(encoded_headers)
        headers.update(target.auth_headers)
        if target._signing_key is not None:
            headers.update(signature_headers(target._signing_key, event.id, int(self._clock()), body))
        return await self._send(target.method, target.url, headers, body, target.policy.timeout)

    async def _give_up(self, lane: _Lane[E], event: E, last: _Response | None, why: str) -> None:
        """The event failed for the subscriber: dead-letter it, or drop it with a reason."""
        target = lane.target
        if lane.health.record_event_failure():
            reason, message = lane.health.pause_reason or (HealthReason.AUTO_PAUSED.value, "")
            self._pause_notify(lane, reason, message)
        status = last.status if last is not None else None
        dead_letter = target.policy.dead_letter
        if dead_letter is None:
            self._drop(
                lane, event, DropReason.NO_DEAD_LETTER, f"{why}; no dead-letter sink configured", status
            )
            return
        extensions: dict[str, object] = {"ocerrordest": target.redacted_url}
        if last is not None and last.status is not None:
            extensions["ocerrorcode"] = last.status
        if last is not None and last.body_prefix:
            extensions["ocerrordata"] = base64.b64encode(last.body_prefix[:ERROR_DATA_LIMIT]).decode("ascii")
        try:
            dead = self._dead_letter_transform(event, extensions)
            headers, body = self._encoder(dead, ContentMode.STRUCTURED)
        except Exception as error:
            self._drop(
                lane,
                event,
                DropReason.DEAD_LETTER_FAILED,
                f"{why}; building the dead letter failed: {type(error).__name__}: {_clip(str(error))}",
                status,
            )
            return
        request_headers = dict(headers)
        request_headers.update(target.dead_letter_headers)
        failure = await self._send_dead_letter(lane, event, dead_letter, request_headers, body)
        if failure is None:
            lane.health.record_dead_lettered()
            logger.warning("event %s for %s dead-lettered: %s", event.id, lane.key, why)
            self._report_outcome(lane.key, event.id, FinalOutcome.DEAD_LETTERED, None)
        else:
            self._drop(
                lane, event, DropReason.DEAD_LETTER_FAILED, f"{why}; dead-lettering failed: {failure}", status
            )

    async def _send_dead_letter(
        self, lane: _Lane[E], event: E, url: str, headers: dict[str, str], body: bytes
    ) -> str | None:
        """POST the dead letter with bounded retries; None on success, else the last error."""
        policy = lane.target.policy
        attempt = 0
        while True:
            attempt += 1
            response = await self._send("POST", url, headers, body, policy.timeout)
            outcome = response.outcome
            if outcome is Outcome.SUCCESS:
                self._record_attempt(lane, event, attempt, response, outcome, Destination.DEAD_LETTER)
                return None
            if outcome is Outcome.RETRYABLE and attempt <= policy.dead_letter_retries:
                delay = self._retry_delay(policy, attempt, response)
                self._record_attempt(lane, event, attempt, response, outcome, Destination.DEAD_LETTER, delay)
                await self._sleep(delay)
                continue
            self._record_attempt(lane, event, attempt, response, outcome, Destination.DEAD_LETTER)
            return f"{_describe(response)} from {redact_url(url)} after {attempt} attempt(s)"

    def _fatal(self, error: str) -> _Response:
        return _Response(status=None, error=error, started=self._clock(), latency_ms=0.0, fatal=True)

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> _Response:
        session = self._ensure_session()
        started = self._clock()
        begin = time.perf_counter()

        def elapsed_ms() -> float:
            return (time.perf_counter() - begin) * 1000.0

        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,  # the webhook spec: 3xx is a failure, never followed
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as reply:
                status = reply.status
                retry_after = reply.headers.get("Retry-After")
                prefix = b""
                # Read (a bounded part of) the body so the pooled connection can be reused, and to keep
                # the start of an error body for ocerrordata. A broken body does not change the verdict.
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    prefix = await _read_prefix(reply.content, _RESPONSE_READ_LIMIT)
                return _Response(
                    status=status,
                    error=None if 200 <= status <= 299 else _status_text(status, reply.reason),
                    started=started,
                    latency_ms=elapsed_ms(),
                    retry_after=retry_after,
                    body_prefix=b"" if 200 <= status <= 299 else prefix[:ERROR_DATA_LIMIT],
                )
        except TimeoutError:
            error = f"timeout after {timeout_s:g}s"
        except aiohttp.ClientConnectorError as failure:
            detail = failure.os_error.strerror or type(failure.os_error).__name__
            error = f"connection to {redact_url(url)} failed: {detail}"
        except (aiohttp.ClientError, OSError) as failure:
            text = str(failure).replace(url, redact_url(url))
            error = f"{type(failure).__name__}: {text}" if text else type(failure).__name__
        return _Response(status=None, error=_clip(error), started=started, latency_ms=elapsed_ms())

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            connector = aiohttp.TCPConnector(limit=self._connection_limit, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent},
                # Subscribers must not be able to plant cookies that reach other subscribers.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._owns_session = True
        return self._session

    # ---------------------------------------------------------------------- bookkeeping & hooks

    def _record_attempt(
        self,
        lane: _Lane[E],
        event: E,
        number: int,
        response: _Response,
        outcome: Outcome,
        destination: Destination,
        retry_in: float | None = None,
    ) -> None:
        entry = Attempt(
            request_id=uuid.uuid4().hex,
            event_id=event.id,
            attempt=number,
            time=response.started,
            status_code=response.status,
            latency_ms=response.latency_ms,
            error=None if outcome is Outcome.SUCCESS else _describe(response),
            outcome=outcome.value,
            destination=destination,
            retry_in=retry_in,
        )
        lane.attempts.append(entry)
        try:
            self._observer.on_attempt(lane.key, entry)
        except Exception:
            logger.exception("delivery observer on_attempt failed")

    def _report_outcome(self, key: str, event_id: str, outcome: FinalOutcome, reason: str | None) -> None:
        try:
            self._observer.on_outcome(key, event_id, outcome, reason)
        except Exception:
            logger.exception("delivery observer on_outcome failed")

    def _drop(
        self, lane: _Lane[E], event: E, reason: DropReason, message: str, status: int | None = None
    ) -> None:
        lane.health.record_dropped(reason, message, status)
        logger.error("dropped event %s (%s) for %s: %s", event.id, event.type, lane.key, message)
        self._report_outcome(lane.key, event.id, FinalOutcome.DROPPED, reason)

    def _pause(self, lane: _Lane[E], reason: HealthReason, message: str) -> None:
        if lane.health.pause(reason, message):
            self._pause_notify(lane, reason.value, message)

    def _pause_notify(self, lane: _Lane[E], reason: str, message: str) -> None:
        lane.wakeup.set()
        logger.warning("delivery to %s paused (%s): %s", lane.key, reason, message)
        if self._on_paused is None:
            return
        try:
            result = self._on_paused(lane.key, reason, message)
        except Exception:
            logger.exception("on_paused callback failed for %s", lane.key)
            return
        if result is not None:
            task = asyncio.ensure_future(_guarded(result, lane.key))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    def _lane(self, key: str) -> _Lane[E]:
        try:
            return self._lanes[key]
        except KeyError:
            raise KeyError(f"no delivery target {key!r}") from None


async def _guarded(awaitable: Awaitable[None], key: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("on_paused callback failed for %s", key)


async def _read_prefix(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _status_text(status: int, phrase: str | None) -> str:
    text = f"HTTP {status}" + (f" {phrase}" if phrase else "")
    if 300 <= status <= 399:
        text += " (redirects are not followed)"
    return text


def _describe(response: _Response) -> str:
    if response.error is not None:
        return response.error
    return f"HTTP {response.status}"


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"
