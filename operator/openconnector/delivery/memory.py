"""The in-memory bus: fan-out to per-subscription lanes with admission control (the default bus).

Shape
-----
One :class:`Dispatcher` per gateway process. Every subscription is a :class:`DeliveryTarget` with its
own *lane*: a bounded FIFO queue and up to ``max_concurrency`` worker tasks. Lanes share nothing but
the sender's connection pool and the byte budget, so one slow or failing subscriber never delays
another. A worker holds its event through the backoff waits, so a failing endpoint gets at most
``max_concurrency`` requests in flight and its queue fills up, instead of being hammered.

Lanes exist only for installed targets: :meth:`Dispatcher.set_target`/:meth:`~Dispatcher.update_target`
create them (the routing-table install), :meth:`~Dispatcher.remove_target` ends them. Intake
(:meth:`~Dispatcher.offer`, :meth:`~Dispatcher.submit`, :meth:`~Dispatcher.try_submit`) never creates or
reconfigures a lane, so a request still holding an old routing table can neither resurrect a deleted
subscription nor switch a lane back to an old URL or secret.

Most subscriptions are quiet, so an installed lane is only its target, health and counters (a few
hundred bytes). Its queue, workers and wake-up state are created on its first enqueue and released
again once it has been empty and idle for ``idle_lane_seconds``; workers are started as the backlog
needs them, up to ``max_concurrency``.

What a lane holds
-----------------
Not the parsed event (about 15 times its wire size) but the encoded request: a :class:`Prepared` with
the headers and body the injected :data:`Encoder` ``(event, ContentMode) -> (headers, body)`` produced,
plus the id, type and source the engine needs. Each event is encoded once per content mode per intake
call, and every attempt and every lane of a fan-out reuses those bytes. Memory is bounded twice: per
lane by ``queue_size`` events waiting *and* ``queue_bytes`` held (queued plus in flight), and per
dispatcher by ``max_queued_bytes`` held in total (a request shared by several lanes counts once).
Sizes are :attr:`Prepared.size`: body and header bytes plus a fixed estimate of the objects around them.

Intake
------
:meth:`Dispatcher.offer` takes a whole fan-out plan ``[(target_key, event), …]`` and, without awaiting,
queues all of it or none of it (:class:`OfferResult` says why not). A caller that wants to wait calls
:meth:`~Dispatcher.wait_for_room` right after the refused offer, and offers again when it returns; the
wait is bounded by its ``deadline`` (what the gateway uses: under a closed loop most senders wait once per
event, so the sleeping waiters share one timer, armed for the earliest deadline) or by the caller's own
``asyncio.timeout``. A refused offer is cheap: its ``detail`` is only formatted when read.

Room is handed out one waiter at a time, not to a herd: a lane that frees a slot or bytes wakes the
longest-waiting waiter that has not yet been refused since that room was freed; the byte budget wakes
as many waiters as the freed bytes cover (counting bytes promised to waiters not yet run). A woken
waiter that does not use the room (refused for another reason, timed out, cancelled) passes it on: as
it leaves the wait, the lane (or budget) checks again, after its offer, and wakes the next one. So
nobody sleeps while there is room it could use, and a waiter needing more than is free is asked once
per freed amount, not on every wake-up. A slot handed to a woken waiter stays reserved for it until it
has run (:meth:`_Lane.taken`): a new sender arriving meanwhile is refused and waits behind it, so under
a closed loop senders are served in arrival order instead of some being overtaken for seconds. A waiter
re-queues at the back after a refusal; the caller's timeout bounds what unfairness remains (a plan
needing several lanes or slots can be overtaken).

Dead letters and content modes
------------------------------
Dead-lettered events get the extensions ``ocerrordest`` (the target URL without query string),
``ocerrorcode`` (the last HTTP status; absent when there was no response) and ``ocerrordata`` (base64 of
the first 1 KiB of the last response body; absent when empty). They are built from the held request by
the injected :data:`Reencoder` ``(prepared, mode, extensions) -> (headers, body)``; the default,
:func:`cloudevents_reencoder`, parses it with the CloudEvents codec, adds the extensions and encodes it
in structured mode (self-describing), in both content modes. Dead letters are sent without the
subscriber's credentials or signature. The same reencoder converts held requests when a target's
``content_mode`` changes while events are queued for it.

Never silently lost
-------------------
Every accepted event ends as delivered, dead-lettered or dropped; drops are counted in the lane's
:class:`SubscriptionHealth`, recorded as its ``lastError`` with a reason, logged at ERROR and reported
to the observer. Secrets (auth headers, signing secret) are never logged, never put in the attempt log
or health, and ``repr(target)`` hides them. Signed deliveries carry ``webhook-id`` =
:func:`~openconnector.delivery.signing.webhook_message_id` (source and id hashed: ids are only unique
per source), stable across retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, Self

from openconnector.api.keys import ResourceKey
from openconnector.delivery.attempts import AttemptLog
from openconnector.delivery.deadlines import TIMER_TOLERANCE, SharedDeadlines
from openconnector.delivery.health import SubscriptionHealth
from openconnector.delivery.outcomes import (
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
    DeliverableEvent,
    E,
    Encoder,
    Prepared,
    Reencoder,
    cloudevents_reencoder,
    prepare_once,
    prepare_or_reason,
)
from openconnector.delivery.retry import Deliverer, DeliveryState
from openconnector.delivery.sending import Response
from openconnector.delivery.target import ContentMode, DeliveryTarget, require_positive_int
from openconnector.egress import EgressPolicy

__all__ = ["DEFAULT_IDLE_LANE_SECONDS", "DEFAULT_MAX_QUEUED_BYTES", "Dispatcher"]

logger = logging.getLogger("openconnector.delivery")

#: Default bytes the whole dispatcher may hold: below the chart's 512 Mi limit with room for the rest.
DEFAULT_MAX_QUEUED_BYTES = 128 * 1024 * 1024
#: Default seconds a lane may sit empty before its queue and workers are released.
DEFAULT_IDLE_LANE_SECONDS = 30.0
_QUEUE_FULL_LOG_INTERVAL = 10.0
_NEVER = float("-inf")  # one shared float instead of one per lane
# What an accepted offer of one delivery answers (read-only, as every OfferResult: one for all of them).
_QUEUED_ONE = OfferResult(True, queued=1)
_NO_KEYS: list[ResourceKey] = []  # the empty key lists of refusals on the hot path (read-only, shared)


@dataclass(slots=True, eq=False)
class _Share:
    """A request held by several lanes of one fan-out: the budget counts it once, until the last."""

    holders: int = 0


@dataclass(slots=True, eq=False)
class _Job:
    """One request queued in one lane. ``share`` is None when this lane alone holds it (the common
    case: one object per delivery instead of two)."""

    prepared: Prepared
    share: _Share | None = None
    released: bool = False


class _Lane:
    """An installed target: its configuration, health and attempt log, kept for as long as it is
    installed (and across target replacement). The queue and workers are in :attr:`runtime`, which
    exists only while the lane has work (see :class:`_LaneRuntime`)."""

    __slots__ = (
        "_attempts",
        "closed",
        "health",
        "held_bytes",
        "keys",
        "queue_full_logged_at",
        "queue_full_suppressed",
        "runtime",
        "target",
    )

    def __init__(self, target: DeliveryTarget, clock: Callable[[], float]) -> None:
        self.target = target
        # ``[key]``: the ``full`` of this lane's refusals, one list for all of them (read-only, as every
        # OfferResult is). The key never changes: a target replacing this one has the same key.
        self.keys = [target.key]
        self.health = SubscriptionHealth(target.health, clock=clock)
        self._attempts: AttemptLog | None = None
        self.held_bytes = 0  # queued and in flight
        self.runtime: _LaneRuntime | None = None
        self.closed = False
        self.queue_full_logged_at = _NEVER
        self.queue_full_suppressed = 0

    @property
    def key(self) -> ResourceKey:
        return self.target.key

    @property
    def attempts(self) -> AttemptLog:
        if self._attempts is None:
            self._attempts = AttemptLog()
        return self._attempts

    def queued(self) -> int:
        """Events waiting (not in flight)."""
        return 0 if self.runtime is None else self.runtime.queue.qsize()

    def taken(self) -> int:
        """Queue slots in use: events waiting plus slots reserved for waiters woken for room that have
        not offered yet. A newcomer may not take a reserved slot, so waiters are served in arrival order
        instead of being overtaken by every new request (which starved some senders for seconds)."""
        runtime = self.runtime
        return 0 if runtime is None else len(runtime.queue.jobs) + runtime.woken


class _JobQueue:
    """A lane's FIFO of jobs: the part of ``asyncio.Queue`` a lane uses (unbounded: the lane bounds it
    itself), in fewer calls per job; the hot path reads ``len(queue.jobs)`` where it would call qsize().
    ``task_done``/``join`` count unfinished jobs as ``asyncio.Queue`` does (the drain waits on them).
    :meth:`get_within` gives up after a while without a job, on one timer per queue."""

    __slots__ = ("_finished", "_getters", "_idle_timer", "_unfinished", "jobs")

    def __init__(self) -> None:
        self.jobs: deque[_Job] = deque()
        # Waiting getters, oldest first, each with the loop time it gives up at. A getter's future is
        # set to True when a job was put for it, to False when it waited long enough.
        self._getters: deque[tuple[asyncio.Future[bool], float]] = deque()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._unfinished = 0
        self._finished = asyncio.Event()
        self._finished.set()

    def qsize(self) -> int:
        return len(self.jobs)

    def empty(self) -> bool:
        return not self.jobs

    def put_nowait(self, job: _Job) -> None:
        self.jobs.append(job)
        if not self._unfinished:
            self._finished.clear()
        self._unfinished += 1
        getters = self._getters
        while getters:
            getter = getters.popleft()[0]
            if not getter.done():
                getter.set_result(True)
                return

    def get_nowait(self) -> _Job:
        if not self.jobs:
            raise asyncio.QueueEmpty
        return self.jobs.popleft()

    async def get(self) -> _Job:
        job = await self.get_within(math.inf)
        assert job is not None  # never gives up
        return job

    async def get_within(self, seconds: float) -> _Job | None:
        """The next job; None when none came within ``seconds`` of waiting.

        The waiting getters share one timer (armed for the oldest), instead of an ``asyncio.timeout``
        per wait: a worker of a lane that keeps up waits for nearly every job."""
        while not self.jobs:
            loop = asyncio.get_running_loop()
            getter: asyncio.Future[bool] = loop.create_future()
            entry = (getter, loop.time() + seconds)
            self._getters.append(entry)
            if self._idle_timer is None and seconds != math.inf:
                self._idle_timer = loop.call_at(entry[1], self._give_up_idle)
            try:
                woken = await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(entry)
                # Woken and cancelled at once: hand the wake-up to the next getter, as asyncio.Queue does.
                if self.jobs and not getter.cancelled() and getter.result():
                    self._wake_getter()
                raise
            if not woken:
                # Waited long enough. A job put just as that was decided stays queued: take it.
                return self.jobs.popleft() if self.jobs else None
        return self.jobs.popleft()

    def _give_up_idle(self) -> None:
        """The idle timer: getters past their time get False; the timer is armed again for the rest."""
        self._idle_timer = None
        getters = self._getters
        if not getters:
            return
        loop = getters[0][0].get_loop()
        now = loop.time() + TIMER_TOLERANCE
        for entry in [entry for entry in getters if entry[1] <= now]:
            getters.remove(entry)
            if not entry[0].done():
                entry[0].set_result(False)
        deadline = min((entry[1] for entry in getters), default=math.inf)
        if deadline != math.inf:
            self._idle_timer = loop.call_at(deadline, self._give_up_idle)

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()[0]
            if not getter.done():
                getter.set_result(True)
                return

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished:
            self._finished.set()

    async def join(self) -> None:
        if self._unfinished:
            await self._finished.wait()


class _LaneRuntime:
    """The working part of a lane, created on its first enqueue and released when it went idle."""

    __slots__ = ("current", "queue", "room_version", "waiters", "wakeup", "woken", "workers")

    def __init__(self, paused: bool) -> None:
        self.queue = _JobQueue()
        self.workers: dict[int, asyncio.Task[None]] = {}
        self.current: dict[int, _Job] = {}  # worker index -> the job it is delivering
        self.wakeup = asyncio.Event()  # set while paused: cuts backoff waits short
        if paused:
            self.wakeup.set()
        # Sleeping waiters -> room_version when they started waiting. Insertion order is arrival order,
        # so the versions ascend: once the first one has not seen room freed since, nobody has.
        self.waiters: dict[_Waiter, int] = {}
        self.room_version = 0  # bumped whenever a slot or bytes are freed (or the limits change)
        self.woken = 0  # waiters woken for room here that have not run yet

    @property
    def idle(self) -> bool:
        """Nothing queued or in flight: room for anything that fits the lane at all."""
        return not self.current and not self.queue.jobs


class _Waiter:
    """One :meth:`Dispatcher.wait_for_room` call, woken at most once.

    ``room`` is the lane runtime whose freed room woke it, ``promised`` the budget bytes promised to it
    when the budget woke it; neither when it was woken because the routing changed or on close. On
    leaving the wait it hands either back, so that the next waiter gets its turn if this one does not
    use the room.
    """

    __slots__ = ("future", "lane", "promised", "room")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.lane: _Lane | None = None
        self.room: _LaneRuntime | None = None
        self.promised = 0

    def wake(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def is_over(self) -> bool:
        """It has left its wait (or was woken): its deadline no longer matters."""
        return self.future.done()

    def expire(self) -> None:
        """Its deadline passed before its turn came (a waiter already woken keeps its turn)."""
        if not self.future.done():
            self.future.set_exception(TimeoutError())


@dataclass(slots=True)
class _Encoded:
    """An intake plan after encoding: what to queue where, and what could not be encoded."""

    entries: list[tuple[_Lane, Prepared]] = field(default_factory=list)
    failures: list[tuple[_Lane, DeliverableEvent, str]] = field(default_factory=list)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


class Dispatcher(Generic[E]):
    """Delivers events to targets. Use as ``async with Dispatcher(encoder) as d:`` or call ``close()``.

    ``encoder`` turns an event into a request per content mode; ``reencoder`` rebuilds a held request
    (dead letters, content-mode changes). ``max_queued_bytes`` bounds the bytes held by all lanes
    together. ``clock`` is Unix time (timestamps, Retry-After dates, signatures), ``sleep`` the backoff
    wait and ``rng`` the jitter source; all three are injectable for tests. The sender pools
    keep-alive connections (made on first use; https verified against ``ssl_context``, default the
    system's trust store) with
    ``connection_limit`` connections in total (0 = unbounded: the sum of the targets'
    ``max_concurrency`` is the bound). A lane's queue and workers are released after
    ``idle_lane_seconds`` without work (0: as soon as it is empty).
    """

    def __init__(
        self,
        encoder: Encoder[E],
        *,
        reencoder: Reencoder = cloudevents_reencoder,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        on_paused: PauseCallback | None = None,
        observer: DeliveryObserver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connection_limit: int = 0,
        user_agent: str = "openconnector-delivery",
        egress: EgressPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Rng | None = None,
        idle_lane_seconds: float = DEFAULT_IDLE_LANE_SECONDS,
    ) -> None:
        require_positive_int("max_queued_bytes", max_queued_bytes)
        if isinstance(idle_lane_seconds, bool) or not isinstance(idle_lane_seconds, int | float):
            raise ValueError(f"idle_lane_seconds: must be a number, got {idle_lane_seconds!r}")
        if not 0 <= idle_lane_seconds < float("inf"):
            raise ValueError(
                f"idle_lane_seconds: must be a finite number of seconds, 0 or more, got {idle_lane_seconds!r}"
            )
        self._encoder = encoder
        self._max_queued_bytes = max_queued_bytes
        self._clock = clock
        self._sleep = sleep
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
        self._lanes: dict[ResourceKey, _Lane] = {}
        self._held_bytes = 0  # every held request once, however many lanes hold it
        self._budget_waiters: dict[_Waiter, int] = {}  # sleeping waiter -> bytes it needs
        self._budget_promised = 0  # bytes promised to budget waiters woken but not yet run
        self._budget_least_need = 0  # at most the smallest need of the budget waiters: stop scanning below
        # Waiters with a deadline, and the one timer that expires them.
        self._deadlines: SharedDeadlines[_Waiter] = SharedDeadlines(_Waiter.is_over, _Waiter.expire)
        self._idle_lane_seconds = float(idle_lane_seconds)
        self._closed = False

    # ------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the connection pool now (otherwise it is created on first delivery)."""
        self._sender.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ready(self) -> bool:
        """Intake works (until closed): nothing outside the process to wait for."""
        return not self._closed

    @property
    def readiness_detail(self) -> str:
        return "the dispatcher is closed" if self._closed else ""

    async def close(self, drain_deadline: float = 10.0) -> int:
        """Stop intake, let lanes finish queued and in-flight events for up to ``drain_deadline``
        seconds, then cancel and count the rest as dropped (reason ``shutdown``). Returns that count."""
        if self._closed:
            return 0
        self._closed = True
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.closed = True
            _wake_all(lane)
        waiters, self._budget_waiters = self._budget_waiters, {}
        for waiter in waiters:
            waiter.wake()
        self._deadlines.clear()  # every waiter has been woken: nobody left to expire
        dropped = await asyncio.gather(
            *(self._shutdown_lane(lane, drain_deadline, DropReason.SHUTDOWN) for lane in lanes)
        )
        await self._deliverer.wait_callbacks(drain_deadline)
        await self._sender.close()
        return sum(dropped)

    # --------------------------------------------------------------------------------- targets

    def set_target(self, target: DeliveryTarget) -> None:
        """Add a target or replace the one with the same key (queued events and health are kept)."""
        self.update_target(target.key, target)

    def update_target(self, key: ResourceKey, target: DeliveryTarget) -> None:
        """Replace the configuration of ``key``; the next attempt of every queued or retrying event uses
        it (URL, auth, signing, policy, content mode, concurrency, queue limits). Adds the target when
        new. This and :meth:`set_target` are the only ways a lane comes into existence."""
        if target.key != key:
            raise ValueError(f"target.key: {target.key} does not match the key being updated {key}")
        if self._closed:
            raise DeliveryClosedError("the dispatcher is closed")
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = _Lane(target, self._clock)  # no queue or workers until it gets work
            return
        if lane.target is target:
            return
        old = lane.target
        lane.target = target
        if target.health != old.health:
            lane.health.reconfigure(target.health)
        if lane.runtime is not None:
            self._ensure_workers(lane, lane.runtime)  # scale up (down happens as workers finish)
            self._room_freed(lane, lane.runtime)  # the limits may have grown

    async def remove_target(self, key: ResourceKey, *, drain_deadline: float = 10.0) -> int:
        """Stop intake for ``key``, deliver what is queued for up to ``drain_deadline`` seconds, then
        drop the rest (reason ``removed``). Returns the number dropped; 0 for an unknown key."""
        lane = self._lanes.pop(key, None)
        if lane is None:
            return 0
        lane.closed = True
        _wake_all(lane)
        return await self._shutdown_lane(lane, drain_deadline, DropReason.REMOVED)

    def resume(self, key: ResourceKey) -> bool:
        """Deliver to a paused target again (after its spec changed). False if it was not paused."""
        lane = self._lanes.get(key)
        if lane is None or not lane.health.paused:
            return False
        lane.health.resume()
        if lane.runtime is not None:
            lane.runtime.wakeup.clear()
        logger.info("delivery to %s resumed", key)
        return True

    def target_keys(self) -> list[ResourceKey]:
        return list(self._lanes)

    def target(self, key: ResourceKey) -> DeliveryTarget:
        return self._lane(key).target

    def health(self, key: ResourceKey) -> SubscriptionHealth:
        return self._lane(key).health

    def attempts(self, key: ResourceKey) -> AttemptLog:
        return self._lane(key).attempts

    def queue_depth(self, key: ResourceKey) -> int:
        """Events queued or in flight for ``key``."""
        runtime = self._lane(key).runtime
        return 0 if runtime is None else runtime.queue.qsize() + len(runtime.current)

    def lane_active(self, key: ResourceKey) -> bool:
        """Whether ``key``'s lane currently has a queue and workers (it had work recently)."""
        return self._lane(key).runtime is not None

    def queued_bytes(self, key: ResourceKey | None = None) -> int:
        """Bytes held (queued and in flight) by ``key``'s lane, or by the dispatcher (each request once)."""
        return self._held_bytes if key is None else self._lane(key).held_bytes

    @property
    def max_queued_bytes(self) -> int:
        return self._max_queued_bytes

    async def join(self, key: ResourceKey | None = None) -> None:
        """Wait until ``key`` (or every target) has no queued or in-flight events."""
        lanes = [self._lane(key)] if key is not None else list(self._lanes.values())
        runtimes = [lane.runtime for lane in lanes if lane.runtime is not None]
        await asyncio.gather(*(runtime.queue.join() for runtime in runtimes))

    # ---------------------------------------------------------------------------------- intake

    def offer(self, plan: Sequence[tuple[ResourceKey, E]]) -> OfferResult:
        """Queue every ``(target_key, event)`` of ``plan``, or nothing; never awaits.

        Each event is encoded once per content mode its lanes need. Keys without an installed lane are
        skipped (lanes are never created here). Accepted only when every lane has room for its part, by
        count and bytes, and the byte budget has room for the whole plan. Raises
        :class:`DeliveryClosedError` once the dispatcher is closed.
        """
        if self._closed:
            raise DeliveryClosedError("the dispatcher is closed")
        if not plan:
            return OfferResult(True, queued=0)  # an event nobody subscribes to: nothing to check
        if len(plan) == 1:  # the common case: one delivery to an installed lane, no lists to build
            key, event = plan[0]
            lane = self._lanes.get(key)
            if lane is not None and not lane.closed:
                return self._offer_one(lane, event, _NO_KEYS, None)  # nothing skipped (read-only)
        skipped: list[ResourceKey] = []
        wanted: list[tuple[_Lane, E]] = []
        for key, event in plan:
            lane = self._lanes.get(key)
            if lane is None or lane.closed:
                skipped.append(key)
            else:
                wanted.append((lane, event))
        if len(wanted) == 1:
            lane, event = wanted[0]
            return self._offer_one(lane, event, skipped, {})
        # Count limits need no encoding: refuse cheaply while a lane is full, before encoding anything.
        refusal = self._count_refusal(wanted, skipped)
        if refusal is not None:
            return refusal
        return self._admit(self._encode(wanted, {}), skipped)

    def _offer_one(
        self,
        lane: _Lane,
        event: E,
        skipped: list[ResourceKey],
        cache: dict[tuple[int, ContentMode], Prepared | str] | None,
    ) -> OfferResult:
        """:meth:`_count_refusal`, :meth:`_encode` and :meth:`_admit` for a plan of one delivery (the
        common case), with the same checks in the same order and none of their bookkeeping. ``cache``
        keeps the encoding across offers of the same event (None: encoded for this offer only)."""
        target = lane.target
        runtime = lane.runtime
        if runtime is not None and (
            len(runtime.queue.jobs) + runtime.woken >= target.queue_size
            or lane.held_bytes >= target.queue_bytes
        ):  # lane.taken() + 1 > queue_size, inline: the waiting sender's hot path
            # Positional, with the shared empty list: no list factories in the waiting sender's hot path.
            return OfferResult(False, 0, skipped, _NO_KEYS, lane.keys, 0, _NO_KEYS, _describe_full(lane))
        mode = target.content_mode
        if cache is None:
            prepared = prepare_or_reason(event, mode, self._encoder)
        else:
            prepared = prepare_once(cache, event, mode, self._encoder)
        if not isinstance(prepared, Prepared):
            self._deliverer.drop(lane, event, DropReason.ENCODING_FAILED, prepared)
            return OfferResult(True, queued=0, skipped=skipped, dropped=[lane.key])
        size = prepared.size
        if size > target.queue_bytes:
            describe = partial(_bytes_detail, size, lane.key, target.queue_bytes)
            return OfferResult(False, skipped=skipped, too_large=[lane.key], describe=describe)
        if size > self._max_queued_bytes:
            describe = partial(_budget_exceeded_detail, size, self._max_queued_bytes)
            return OfferResult(False, skipped=skipped, too_large=[lane.key], describe=describe)
        if lane.held_bytes + size > target.queue_bytes:
            # As _admit answers: the budget's need too, when it lacks room as well.
            needed = size if self._held_bytes + size > self._max_queued_bytes else 0
            return OfferResult(
                False, skipped=skipped, full=lane.keys, budget_needed=needed, describe=_describe_full(lane)
            )
        if self._held_bytes + size > self._max_queued_bytes:
            describe = partial(_budget_full_detail, self._held_bytes, self._max_queued_bytes)
            return OfferResult(False, skipped=skipped, budget_needed=size, describe=describe)
        lane.held_bytes += size
        self._held_bytes += size
        if runtime is None:
            runtime = lane.runtime = _LaneRuntime(paused=lane.health.paused)
        runtime.queue.put_nowait(_Job(prepared))
        if len(runtime.workers) < target.max_concurrency:  # else every worker slot is taken already
            self._ensure_workers(lane, runtime)
        return OfferResult(True, queued=1, skipped=skipped) if skipped else _QUEUED_ONE

    async def store(
        self, plan: Sequence[tuple[ResourceKey, E]], *, deadline: float | None = None
    ) -> OfferResult:
        """:meth:`offer` for the :class:`~openconnector.delivery.bus.DeliveryBus` protocol (it never waits,
        so ``deadline`` does not matter)."""
        return self.offer(plan)

    async def wait_for_room(
        self, keys: Collection[ResourceKey], *, needed_bytes: int = 0, deadline: float | None = None
    ) -> None:
        """Return when it is this caller's turn to use room freed in a lane of ``keys`` (a slot or
        bytes), or (``needed_bytes`` > 0) in the byte budget (``needed_bytes`` free); at once when one
        of ``keys`` is no longer installed or is idle, or the dispatcher is closed. Then offer again.
        Raises :class:`TimeoutError` when its turn has not come by ``deadline`` (the event loop's
        ``time()``): the waiters share one timer, armed for the earliest deadline, instead of an
        ``asyncio.timeout`` (or a timer) each (a sender waits for nearly every event under a closed
        loop). Without a deadline, bound it with ``asyncio.timeout``.

        Call it right after the refused offer, without awaiting anything in between:
        ``wait_for_room(result.full, needed_bytes=result.budget_needed)``. It waits for room freed
        *after* it was called. Room is handed to one waiter at a time; one that does not use it (its
        next offer is refused, or it is cancelled) hands it to the next as it leaves.
        """
        if self._closed:
            return
        runtimes: list[_LaneRuntime] = []
        for key in keys:
            lane = self._lanes.get(key)
            if lane is None or lane.closed:
                return  # the routing changed: the next offer skips it
            runtime = lane.runtime
            if runtime is None or runtime.idle:
                return  # it was drained meanwhile: an idle lane takes whatever can fit it at all
            runtimes.append(runtime)
        watch_budget = 0 < needed_bytes <= self._max_queued_bytes
        if watch_budget and self._budget_free() >= needed_bytes:
            return
        if not runtimes and not watch_budget:
            return
        loop = asyncio.get_running_loop()
        if deadline is not None and deadline <= loop.time():
            raise TimeoutError  # no turn can come in time (as asyncio.timeout at its next await)
        waiter = _Waiter(loop.create_future())
        if deadline is not None:  # (a waiter that leaves first cancels nothing: see SharedDeadlines)
            self._deadlines.add(waiter, deadline, loop)
        for runtime in runtimes:
            runtime.waiters[waiter] = runtime.room_version
        if watch_budget:
            if not self._budget_waiters or needed_bytes < self._budget_least_need:
                self._budget_least_need = needed_bytes
            self._budget_waiters[waiter] = needed_bytes
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.exception()  # expired, then cancelled before it ran: nobody reads it
            raise
        finally:
            # Its deadline entry stays: the shared timer skips a waiter that has left (its future is done).
            for runtime in runtimes:
                runtime.waiters.pop(waiter, None)
            if watch_budget:
                self._budget_waiters.pop(waiter, None)
            self._hand_on(waiter)

    def _hand_on(self, waiter: _Waiter) -> None:
        """``waiter`` leaves its wait: give back what it was woken with, and once its caller has had its
        go (offered, or given up), let the next waiter have any room that is left."""
        loop = asyncio.get_running_loop()
        if waiter.room is not None and waiter.lane is not None:
            waiter.room.woken -= 1
            if waiter.room.waiters:  # nobody else waits here: nothing to hand on
                loop.call_soon(self._wake_for_room, waiter.lane)
        if waiter.promised:
            self._budget_promised -= waiter.promised
            loop.call_soon(self._wake_for_budget)

    def _room_freed(self, lane: _Lane, runtime: _LaneRuntime) -> None:
        """A slot or bytes of ``lane`` were freed (or its limits changed): one waiter's turn."""
        runtime.room_version += 1
        if runtime.waiters:
            self._wake_for_room(lane)

    def _wake_for_room(self, lane: _Lane) -> None:
        """Wake the first waiter of ``lane`` that has not been refused since room was last freed, if
        there is room and more free slots than waiters already woken for them."""
        runtime = lane.runtime
        if runtime is None or not runtime.waiters or lane.closed:
            return
        target = lane.target
        if lane.held_bytes >= target.queue_bytes:
            return  # no room for even the smallest event
        if target.queue_size - len(runtime.queue.jobs) <= runtime.woken:
            return  # no free slot, or every free slot already has a waiter on its way (woken >= 0)
        version = runtime.room_version
        for waiter, since in runtime.waiters.items():
            if since >= version:
                return  # it (and everyone after it) was refused with the room as it is now
            if not waiter.future.done():  # done: woken elsewhere or cancelled, leaving shortly
                break
        else:
            return
        del runtime.waiters[waiter]
        runtime.woken += 1
        waiter.lane, waiter.room = lane, runtime
        waiter.future.set_result(None)  # waiter.wake(): its future is not done (checked above)

    def _wake_for_budget(self) -> None:
        """Wake, oldest first, the budget waiters the free bytes cover (minus those already promised)."""
        if not self._budget_waiters:
            return
        least = self._budget_least_need
        free = self._budget_free() - self._budget_promised
        if free < least:
            return
        chosen: list[tuple[_Waiter, int]] = []
        for waiter, needed in self._budget_waiters.items():
            if needed <= free and not waiter.future.done():
                chosen.append((waiter, needed))
                free -= needed
                if free < least:
                    break  # nobody else fits
        for waiter, needed in chosen:
            del self._budget_waiters[waiter]
            self._budget_promised += needed
            waiter.promised = needed
            waiter.wake()

    async def submit(self, target: DeliveryTarget | ResourceKey, event: E) -> None:
        """Queue ``event`` for the installed target with ``target``'s key, waiting while there is no
        room (back-pressure); wrap in ``asyncio.timeout`` to bound the wait.

        Only the key of a :class:`DeliveryTarget` is used: the installed configuration applies. Raises
        :class:`DeliveryClosedError` when the key is not installed, the dispatcher is closed, or the
        target is removed while waiting; :class:`EventTooLargeError` when the event can never fit.
        """
        key = target.key if isinstance(target, DeliveryTarget) else target
        cache: dict[tuple[int, ContentMode], Prepared | str] = {}  # encode once, however long we wait
        while True:
            if self._closed:
                raise DeliveryClosedError("the dispatcher is closed")
            lane = self._lanes.get(key)
            if lane is None or lane.closed:
                raise DeliveryClosedError(f"no delivery target {key} is installed")
            result = self._offer_one(lane, event, [], cache)
            if result.accepted:
                return
            if result.too_large:
                raise EventTooLargeError(result.detail)
            await self.wait_for_room(result.full, needed_bytes=result.budget_needed)

    def try_submit(self, target: DeliveryTarget | ResourceKey, event: E) -> bool:
        """Queue ``event`` without waiting; True when queued. Otherwise the event is dropped, counted
        (reason ``shutdown``, ``unknownTarget``, ``queueFull``, ``tooLarge`` or ``encodingFailed``),
        logged and reported, and False is returned. Never creates or reconfigures a lane."""
        key = target.key if isinstance(target, DeliveryTarget) else target
        lane = self._lanes.get(key)
        if self._closed:
            if lane is not None:
                lane.health.record_dropped(DropReason.SHUTDOWN, "the dispatcher is shutting down")
            logger.error("dropped event %s for %s: the dispatcher is shutting down", event.id, key)
            self._deliverer.report_outcome(key, event.id, FinalOutcome.DROPPED, DropReason.SHUTDOWN)
            return False
        if lane is None or lane.closed:
            # No lane, so no health record: the observer (metrics) and the log carry it.
            logger.error(
                "dropped event %s (%s): no delivery target %s is installed", event.id, event.type, key
            )
            self._deliverer.report_outcome(key, event.id, FinalOutcome.DROPPED, DropReason.UNKNOWN_TARGET)
            return False
        result = self._offer_one(lane, event, [], {})
        if result.accepted:
            return result.queued > 0
        if result.too_large:
            lane.health.record_dropped(DropReason.TOO_LARGE, result.detail)
            logger.error("dropped event %s for %s: %s", event.id, lane.key, result.detail)
            self._deliverer.report_outcome(lane.key, event.id, FinalOutcome.DROPPED, DropReason.TOO_LARGE)
            return False
        lane.health.record_dropped(DropReason.QUEUE_FULL, result.detail)
        self._log_queue_full(lane, event, result.detail)
        self._deliverer.report_outcome(lane.key, event.id, FinalOutcome.DROPPED, DropReason.QUEUE_FULL)
        return False

    def _count_refusal(
        self, wanted: Sequence[tuple[_Lane, E]], skipped: list[ResourceKey]
    ) -> OfferResult | None:
        """A refusal on event counts (or a lane already at its byte limit), decided before encoding.

        The hot path of a sender waiting for a full lane: no formatting here (``detail`` is lazy)."""
        counts: dict[_Lane, int] = {}
        for lane, _ in wanted:
            counts[lane] = counts.get(lane, 0) + 1
        full: list[_Lane] = []
        for lane, count in counts.items():
            target = lane.target
            if count > target.queue_size:
                too_large = [x.key for x, n in counts.items() if n > x.target.queue_size]
                describe = partial(_count_detail, count, lane.key, target.queue_size)
                return OfferResult(False, skipped=skipped, too_large=too_large, describe=describe)
            if lane.taken() + count > target.queue_size or lane.held_bytes >= target.queue_bytes:
                full.append(lane)
        if not full:
            return None
        return OfferResult(
            False, skipped=skipped, full=[lane.key for lane in full], describe=_describe_full(full[0])
        )

    def _encode(
        self, wanted: Sequence[tuple[_Lane, E]], cache: dict[tuple[int, ContentMode], Prepared | str]
    ) -> _Encoded:
        """Encode each event once per content mode (``cache`` by event identity: the events are alive
        in the caller's plan meanwhile). A failure is kept as its message, to count if accepted."""
        encoded = _Encoded()
        for lane, event in wanted:
            mode = lane.target.content_mode
            prepared = prepare_once(cache, event, mode, self._encoder)
            if isinstance(prepared, Prepared):
                encoded.entries.append((lane, prepared))
            else:
                encoded.failures.append((lane, event, prepared))
        return encoded

    def _admit(self, encoded: _Encoded, skipped: list[ResourceKey]) -> OfferResult:
        """All or nothing: queue every entry if every lane and the budget have room. No awaits."""
        counts: dict[_Lane, int] = {}
        sizes: dict[_Lane, int] = {}
        distinct: dict[int, Prepared] = {}
        for lane, prepared in encoded.entries:
            counts[lane] = counts.get(lane, 0) + 1
            sizes[lane] = sizes.get(lane, 0) + prepared.size
            distinct[id(prepared)] = prepared
        total = sum(prepared.size for prepared in distinct.values())
        too_large = [
            lane
            for lane in counts
            if counts[lane] > lane.target.queue_size or sizes[lane] > lane.target.queue_bytes
        ]
        if too_large:
            lane = too_large[0]
            describe = partial(_bytes_detail, sizes[lane], lane.key, lane.target.queue_bytes)
            return OfferResult(
                False, skipped=skipped, too_large=[x.key for x in too_large], describe=describe
            )
        if total > self._max_queued_bytes:
            describe = partial(_budget_exceeded_detail, total, self._max_queued_bytes)
            return OfferResult(False, skipped=skipped, too_large=[x.key for x in counts], describe=describe)
        full = [
            lane
            for lane in counts
            if lane.taken() + counts[lane] > lane.target.queue_size
            or lane.held_bytes + sizes[lane] > lane.target.queue_bytes
        ]
        budget_needed = total if self._held_bytes + total > self._max_queued_bytes else 0
        if full or budget_needed:
            return OfferResult(
                False,
                skipped=skipped,
                full=[lane.key for lane in full],
                budget_needed=budget_needed,
                describe=(
                    _describe_full(full[0])
                    if full
                    else partial(_budget_full_detail, self._held_bytes, self._max_queued_bytes)
                ),
            )
        shares: dict[int, _Share] = {}
        for lane, prepared in encoded.entries:
            share = shares.get(id(prepared))
            if share is None:
                share = shares[id(prepared)] = _Share()
            share.holders += 1
            lane.held_bytes += prepared.size
            runtime = lane.runtime
            if runtime is None:
                runtime = lane.runtime = _LaneRuntime(paused=lane.health.paused)
            runtime.queue.put_nowait(_Job(prepared, share))
        self._held_bytes += total
        for lane in counts:
            if lane.runtime is not None:
                self._ensure_workers(lane, lane.runtime)
        dropped: list[ResourceKey] = []
        for lane, event, message in encoded.failures:
            dropped.append(lane.key)
            self._deliverer.drop(lane, event, DropReason.ENCODING_FAILED, message)
        return OfferResult(True, queued=len(encoded.entries), skipped=skipped, dropped=dropped)

    def _budget_free(self) -> int:
        return self._max_queued_bytes - self._held_bytes

    def _release(self, lane: _Lane, job: _Job) -> None:
        """``job`` left ``lane`` (delivered, dead-lettered or dropped): free its bytes, wake a waiter."""
        if job.released:
            return
        job.released = True
        size = job.prepared.size
        lane.held_bytes -= size
        if lane.runtime is not None:
            self._room_freed(lane, lane.runtime)
        share = job.share
        if share is not None:
            share.holders -= 1
            if share.holders:
                return  # other lanes still hold the request
        self._held_bytes -= size
        if self._budget_waiters:
            self._wake_for_budget()

    def _log_queue_full(self, lane: _Lane, event: DeliverableEvent, detail: str) -> None:
        # A flood of identical ERROR lines helps nobody: one line per interval, with the count.
        now = time.monotonic()
        if now - lane.queue_full_logged_at < _QUEUE_FULL_LOG_INTERVAL:
            lane.queue_full_suppressed += 1
            return
        suppressed, lane.queue_full_suppressed = lane.queue_full_suppressed, 0
        lane.queue_full_logged_at = now
        logger.error(
            "dropped event %s for %s: %s%s",
            event.id,
            lane.key,
            detail,
            f"; {suppressed} more dropped since the last report" if suppressed else "",
        )

    # --------------------------------------------------------------------------------- workers

    def _ensure_workers(self, lane: _Lane, runtime: _LaneRuntime) -> None:
        """Start workers for what is queued beyond the idle ones, up to ``max_concurrency``."""
        workers = runtime.workers
        max_concurrency = lane.target.max_concurrency
        if len(workers) >= max_concurrency:
            # Every slot taken (the busy lane's common case). After a scale-down the workers above the
            # new limit still count here: each starts its successor within the limit as it leaves.
            return
        missing = len(runtime.queue.jobs) - (len(workers) - len(runtime.current))  # minus the idle ones
        index = 0
        while missing > 0 and index < max_concurrency:
            if index not in workers:
                name = f"delivery:{lane.key}#{index}"
                workers[index] = asyncio.create_task(self._work(lane, runtime, index), name=name)
                missing -= 1
            index += 1

    async def _work(self, lane: _Lane, runtime: _LaneRuntime, index: int) -> None:
        queue = runtime.queue
        deliverer = self._deliverer
        sender = deliverer.sender
        try:
            while index < lane.target.max_concurrency:
                if queue.jobs:
                    job = queue.jobs.popleft()
                else:
                    # Wait up to idle_lane_seconds for the next job (0: leave at once).
                    idle_seconds = self._idle_lane_seconds
                    next_job = await queue.get_within(idle_seconds) if idle_seconds > 0 else None
                    if next_job is None:
                        return  # idle: the lane lets go of its queue and workers once all are gone
                    job = next_job
                runtime.current[index] = job  # before any await: shutdown counts it as in flight
                self._room_freed(lane, runtime)  # a queue slot is free (its bytes stay held until done)
                prepared = job.prepared
                try:
                    # The first attempt is Deliverer.try_once unrolled: sent and settled from here (one
                    # coroutine less per event); a failure goes through after_failure, a paused lane and
                    # the retries through _deliver.
                    if lane.health.paused:
                        await self._deliver(lane, runtime, prepared, {}, 0, None)
                    else:
                        target = lane.target
                        converted: dict[ContentMode, tuple[Mapping[str, str], bytes]] = {}
                        if target._plain and target.content_mode is prepared.content_mode:
                            # What subscriber_request answers for a plain target: the request as encoded.
                            last = await sender.send(
                                target.method,
                                target.url,
                                prepared.headers,
                                prepared.body,
                                target.policy.timeout,
                            )
                        else:
                            request = deliverer.subscriber_request(target, prepared, converted)
                            if isinstance(request, Response):
                                last = request
                            else:
                                last = await sender.send(
                                    target.method, target.url, request[0], request[1], target.policy.timeout
                                )
                        status = last.status
                        if status is not None and 200 <= status <= 299 and not last.fatal:  # SUCCESS
                            deliverer.delivered(lane, prepared, 1, last)
                        else:
                            delay = await deliverer.after_failure(lane, prepared, 1, last)
                            if delay is not None:
                                await self._backoff(runtime, delay)
                                await self._deliver(lane, runtime, prepared, converted, 1, last)
                except asyncio.CancelledError:
                    # close()/remove_target() count their own leftovers. Anyone else cancelling us (kopf
                    # cancels tasks created after it started when it stops) must not lose it silently.
                    if not lane.closed:
                        self._deliverer.drop(
                            lane, job.prepared, DropReason.SHUTDOWN, "delivery task cancelled"
                        )
                    raise
                except Exception as error:  # a bug must not lose the event silently
                    logger.exception(
                        "delivery of event %s to %s failed unexpectedly", job.prepared.id, lane.key
                    )
                    self._deliverer.drop(
                        lane, job.prepared, DropReason.INTERNAL, f"internal error: {type(error).__name__}"
                    )
                finally:
                    runtime.current.pop(index, None)
                    self._release(lane, job)
                    queue.task_done()
        finally:
            if runtime.workers.get(index) is asyncio.current_task():
                del runtime.workers[index]
            if index >= lane.target.max_concurrency and not lane.closed and not queue.empty():
                self._ensure_workers(lane, runtime)  # scaled down: those within the new limit take over
            elif lane.runtime is runtime and not runtime.workers and runtime.idle and not runtime.waiters:
                lane.runtime = None  # quiet now: back to a few hundred bytes until its next event

    async def _shutdown_lane(self, lane: _Lane, deadline: float, reason: DropReason) -> int:
        runtime = lane.runtime
        if runtime is None:
            return 0  # never had work, or went idle: nothing queued or in flight
        queue = runtime.queue
        if deadline > 0 and not runtime.idle:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.join(), timeout=deadline)
        # No awaits from here until the workers are cancelled: the set of unfinished jobs is fixed.
        leftovers = list(runtime.current.values())  # released by their workers' finally
        while not queue.empty():
            job = queue.get_nowait()
            leftovers.append(job)
            self._release(lane, job)
            queue.task_done()
        workers = list(runtime.workers.values())
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
                self._deliverer.report_outcome(lane.key, job.prepared.id, FinalOutcome.DROPPED, reason)
        return len(leftovers)

    # -------------------------------------------------------------------------------- delivery
    async def _deliver(
        self,
        lane: _Lane,
        runtime: _LaneRuntime,
        prepared: Prepared,
        converted: dict[ContentMode, tuple[Mapping[str, str], bytes]],
        attempt: int,
        last: Response | None,
    ) -> None:
        """The attempts after ``attempt`` (``last`` its response) until delivered or given up, sleeping
        through the backoff (cut short by a pause). A paused lane gives the event up instead."""
        deliverer = self._deliverer
        health = lane.health
        # The pause check is inline: awaiting give_up_if_paused would build a coroutine per attempt.
        while not (health.paused and await deliverer.give_up_if_paused(lane, prepared, last)):
            attempt += 1
            delay, last = await deliverer.try_once(lane, prepared, attempt, converted)
            if delay is None:
                return
            await self._backoff(runtime, delay)

    async def _backoff(self, runtime: _LaneRuntime, delay: float) -> None:
        """Wait ``delay`` seconds, or less if the target gets paused meanwhile."""
        if runtime.wakeup.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(runtime.wakeup.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _on_stop(self, state: DeliveryState, reason: str, message: str) -> None:
        """A lane stopped delivering (410, auto-pause): cut its backoff waits short."""
        if isinstance(state, _Lane) and state.runtime is not None:
            state.runtime.wakeup.set()

    def _lane(self, key: ResourceKey) -> _Lane:
        try:
            return self._lanes[key]
        except KeyError:
            raise KeyError(f"no delivery target {key}") from None


def _describe_full(lane: _Lane) -> partial[str]:
    """Why ``lane`` refused, in the figures of now (its target is immutable: a replacement is another
    object), formatted only if someone reads it."""
    runtime = lane.runtime
    waiting = 0 if runtime is None else len(runtime.queue.jobs)
    return partial(_full_detail, lane.target, waiting, lane.held_bytes)


def _full_detail(target: DeliveryTarget, waiting: int, held: int) -> str:
    return (
        f"the queue of {target.key.namespaced_name} is full ({waiting} of {target.queue_size} events "
        f"waiting, {_mib(held)} of {_mib(target.queue_bytes)} held)"
    )


def _count_detail(count: int, key: ResourceKey, queue_size: int) -> str:
    return f"{count} events for {key.namespaced_name} exceed its queue of {queue_size} events"


def _bytes_detail(size: int, key: ResourceKey, queue_bytes: int) -> str:
    return (
        f"the event needs {_mib(size)} in the queue of {key.namespaced_name}, "
        f"which holds at most {_mib(queue_bytes)}"
    )


def _budget_exceeded_detail(total: int, limit: int) -> str:
    return f"the request needs {_mib(total)} of delivery buffer; the gateway holds at most {_mib(limit)}"


def _budget_full_detail(held: int, limit: int) -> str:
    return f"the delivery buffer is full ({_mib(held)} of {_mib(limit)})"


def _wake_all(lane: _Lane) -> None:
    """``lane`` closed: every waiter returns (its next offer skips the lane)."""
    runtime = lane.runtime
    if runtime is None:
        return
    waiters, runtime.waiters = runtime.waiters, {}
    for waiter in waiters:
        waiter.wake()
