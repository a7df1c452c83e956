"""The gateway's state: the installed routing table, the delivery bus, and the status book.

HTTP handlers (``gateway/app.py``) translate requests into calls on :class:`Gateway`; the operator and
standalone mode install routing tables and read status bodies (built by ``status/bodies.py``, which
gets the compile result and a subscription's lane health from here). Nothing here parses HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import aiohttp
from aiohttp import web

from openconnector.api.kinds import CONSUMER, EVENT, EVENT_SUBSCRIPTION, SOURCE
from openconnector.ce import CloudEvent, build_event, check_nlgov, to_binary, to_structured
from openconnector.ce.codec import Problem
from openconnector.ce.emit import SequenceCounter, build_checked_event
from openconnector.consumers.replay import ReplayGuard, ReplayStore, TieredReplayStore
from openconnector.delivery.bus import DeliveryBus
from openconnector.delivery.memory import Dispatcher
from openconnector.delivery.outcomes import (
    BusUnavailableError,
    DeliveryClosedError,
    EventTooLargeError,
    OfferResult,
)
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.egress import EgressPolicy
from openconnector.egress_resolver import connector_for
from openconnector.gateway.limits import RequestLimits
from openconnector.gateway.metrics import (
    CounterSeries,
    DeliveryMetricsObserver,
    GatewayMetrics,
    Inc,
    SubscriptionHealth,
)
from openconnector.messages.access import Authorizer, TokenAuthorizer
from openconnector.messages.recorder import MessageRecorder
from openconnector.messages.service import MessageService
from openconnector.messages.store import MemoryMessageStore
from openconnector.refusal import Refusal
from openconnector.resources import ResourceKey
from openconnector.routing.table import EventRoute, RoutingTable, SubscriptionRoute
from openconnector.status.bodies import StatusBook, status_view
from openconnector.status.conditions import ready_condition

if TYPE_CHECKING:
    from openconnector.delivery.jetstream import JetStreamSettings
    from openconnector.messages.jetstream_log import JetStreamMessageLog

log = logging.getLogger(__name__)

# (resource key, event type "Normal"|"Warning", reason, message): becomes a Kubernetes Event in a cluster.
Notice = tuple[ResourceKey, str, str, str]
NoticeSink = Callable[[ResourceKey, str, str, str], None]


@dataclass
class GatewaySettings:
    """Gateway-wide settings (flags of ``serve`` and ``run``)."""

    host: str = "127.0.0.1"
    port: int = 8080
    # 0 serves /metrics on the gateway port; another port serves it there only.
    metrics_port: int = 0
    allow_unknown_types: bool = False
    events_token: str | None = field(default=None, repr=False)
    trusted_proxies: Sequence[str] = ()
    max_event_bytes: int = 1024 * 1024
    drain_seconds: float = 20.0
    # The emitting installation, used when an Event's source is relative.
    public_url: str = ""
    submit_timeout: float = 5.0
    limits: RequestLimits = field(default_factory=RequestLimits)
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # The delivery bus: "memory" (default) or "jetstream" (then ``jetstream`` says where and how).
    bus: str = "memory"
    jetstream: JetStreamSettings | None = None
    # The message log (per subscription, bounded) and who may read it (standalone: one bearer token).
    message_max: int = 10_000
    message_max_age: float = 7 * 24 * 3600.0
    api_token: str | None = field(default=None, repr=False)


@functools.lru_cache(maxsize=1024)
def _sequence_name(key: ResourceKey) -> str:
    return str(key)  # the per-Event sequence is counted under the key's text


@functools.lru_cache(maxsize=1024)
def _built_nlgov_problems(type_: str, source: str) -> tuple[Problem, ...]:
    # A probe built as build_event_for builds every event of (type, source): the verdict is theirs.
    return tuple(check_nlgov(build_checked_event(type_, source, None, None, 1)))


# What offering an empty plan to an open memory bus answers (read only: nobody changes an OfferResult).
_NOTHING_QUEUED: Final = OfferResult(True, queued=0)


class WaitingPublish(NamedTuple):
    """A :meth:`Gateway.publish_now` the memory bus refused for now: what it prepared (its records stand),
    for :meth:`Gateway.publish_waiting` to offer again once there is room."""

    table: RoutingTable
    plan: list[tuple[ResourceKey, CloudEvent]]
    placements: list[tuple[str, Sequence[str]]]
    created: list[tuple[ResourceKey, str]]
    pushed: list[tuple[ResourceKey, CloudEvent]]
    result: OfferResult


def _refusal_of(
    error: TimeoutError | DeliveryClosedError | BusUnavailableError | EventTooLargeError,
) -> Refusal:
    """What a sender is told when publishing stopped on ``error`` (nothing of its events was queued)."""
    if isinstance(error, BusUnavailableError):
        return Refusal(503, "bus-unavailable", error.detail, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, DeliveryClosedError):
        return Refusal(503, "shutting-down", "the gateway is shutting down", headers={"Retry-After": "5"})
    if isinstance(error, EventTooLargeError):
        return Refusal(413, "event-too-large", str(error))
    return Refusal(
        503, "delivery-backlog", "delivery queues are full; retry later", headers={"Retry-After": "5"}
    )


class ConsumerCounters(NamedTuple):
    """The counters one Consumer's webhooks count in, bound once instead of looked up per request."""

    received: Inc
    forwarded: Inc


def encode(event: CloudEvent, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return to_binary(event) if mode == ContentMode.BINARY else to_structured(event)


class Gateway:
    def __init__(
        self, settings: GatewaySettings | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.clock = clock
        self.table = RoutingTable.empty()
        self.metrics = GatewayMetrics()
        self.metrics.subscription_health.source = self.health_samples
        self.dispatcher: DeliveryBus[CloudEvent]
        self.replay_guard = ReplayGuard()
        # Replay refusal: this process's guard, and with the JetStream bus also ids shared by every process
        # and kept across restarts.
        self.replay_store: ReplayStore = self.replay_guard
        self.message_store = MemoryMessageStore(
            max_messages=self.settings.message_max, max_age=self.settings.message_max_age, clock=clock
        )
        self.recorder = MessageRecorder(
            self.message_store, self._installed_target, inner=DeliveryMetricsObserver(self.metrics)
        )
        self._pull_keys: frozenset[ResourceKey] = frozenset()
        # With the JetStream bus the message log is kept in a stream and read back by every process.
        self.message_log: JetStreamMessageLog | None = None
        # Standalone: one bearer token; the cluster runner swaps in Kubernetes TokenReview + SAR.
        self.authorizer: Authorizer = TokenAuthorizer(self.settings.api_token)
        if self.settings.bus == "jetstream":
            from openconnector.delivery.jetstream import JetStreamBus, JetStreamReplayStore, JetStreamSettings

            bus: JetStreamBus[CloudEvent] = JetStreamBus(
                encode,
                self.settings.jetstream or JetStreamSettings(),
                on_paused=self._on_paused,
                observer=self.recorder,
                egress=self.settings.egress,
                clock=clock,
            )
            self.dispatcher = bus
            self.replay_store = TieredReplayStore(self.replay_guard, JetStreamReplayStore(bus))
            from openconnector.messages.jetstream_log import JetStreamMessageLog

            self.message_log = JetStreamMessageLog(bus, self.message_store)
            self.recorder.writer = self.message_log
        else:
            self.dispatcher = Dispatcher(
                encode,
                on_paused=self._on_paused,
                observer=self.recorder,
                egress=self.settings.egress,
                clock=clock,
            )
        self.messages = MessageService(self, self.message_store, self.recorder.writer)
        memory_bus = self.dispatcher if isinstance(self.dispatcher, Dispatcher) else None
        self._offer_now = None if memory_bus is None else memory_bus.offer
        self._wait_for_room = None if memory_bus is None else memory_bus.wait_for_room
        # Conditions and counters (status/bodies.py); the counters are named here for the intake handlers.
        self.status = StatusBook(clock)
        self.consumer_stats = self.status.consumer_stats
        self.event_stats = self.status.event_stats
        self.source_stats = self.status.source_stats
        self._consumer_counters: dict[ResourceKey, ConsumerCounters] = {}
        self._webhook_bytes: Inc | None = None
        # events_emitted per type label, bound once (its plain series: added to without a call)
        self._emitted: dict[str, CounterSeries] = {}
        self.sequences = SequenceCounter()
        self.ready = asyncio.Event()
        # Set first on shutdown (runtime.py), before the drain: /readyz answers 503 from then on.
        self.draining = False
        self._notice_sinks: list[NoticeSink] = []
        self._health_seen: dict[ResourceKey, str] = {}
        self._routes_by_target: dict[ResourceKey, SubscriptionRoute] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None

    def consumer_counters(self, key: ResourceKey) -> ConsumerCounters:
        """The metric series Consumer ``key``'s webhooks count in, bound on its first request."""
        found = self._consumer_counters.get(key)
        if found is None:
            metrics = self.metrics
            labels = (key.namespace, key.name)
            found = self._consumer_counters[key] = ConsumerCounters(
                metrics.inc_of(metrics.webhooks_received, *labels),
                metrics.inc_of(metrics.webhooks_forwarded, *labels),
            )
        return found

    def webhook_bytes(self) -> Inc:
        """The ``/webhooks`` series of the ingress byte counter, bound on the first webhook (a series
        appears at the first request it counts, as before)."""
        found = self._webhook_bytes
        if found is None:
            found = self._webhook_bytes = self.metrics.inc_of(self.metrics.ingress_bytes, "/webhooks")
        return found

    def route_of(self, key: ResourceKey) -> SubscriptionRoute | None:
        """The installed route of subscription ``key`` (ready), paused or not; None if it has none."""
        return self._routes_by_target.get(key)

    def _installed_target(self, key: ResourceKey) -> DeliveryTarget | None:
        route = self._routes_by_target.get(key)
        return None if route is None else route.target

    def count_pulled(self, key: ResourceKey, count: int) -> None:
        """A pull acknowledged ``count`` events: they count as delivered in the subscription's status."""
        if key in self.dispatcher.target_keys():
            health = self.dispatcher.health(key)
            for _ in range(count):
                health.record_success(200, 0.0)

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self, tick_interval: float = 1.0) -> None:
        await self.dispatcher.start()
        if self.message_log is not None:
            self.message_log.start()
        self._spawn(self._tick_forever(tick_interval))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30),
            connector=connector_for(self.settings.egress, limit=100, limit_per_host=20),
            headers={"User-Agent": "openconnector-gateway"},
        )

    async def close(self) -> int:
        """Drain deliveries up to the deadline; returns how many were dropped."""
        dropped = await self.dispatcher.close(self.settings.drain_seconds)
        if self.message_log is not None:
            await self.message_log.close()
        for task in list(self._background):
            if task.get_coro().__qualname__.endswith("_tick_forever"):  # type: ignore[union-attr]
                task.cancel()
        if self._background:
            await asyncio.wait(set(self._background), timeout=1)
        if self._session is not None:
            await self._session.close()
        return dropped

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Gateway.start() was not awaited")
        return self._session

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def add_notice_sink(self, sink: NoticeSink) -> None:
        self._notice_sinks.append(sink)

    def _notice(self, key: ResourceKey, kind: str, reason: str, message: str) -> None:
        log.log(logging.WARNING if kind == "Warning" else logging.INFO, "%s %s: %s", key, reason, message)
        for sink in self._notice_sinks:
            sink(key, kind, reason, message)

    # ------------------------------------------------------------------------ routing table

    def install(self, table: RoutingTable) -> None:
        """Swap in a new table and bring the dispatcher's targets in line with it."""
        previous = self._routes_by_target
        current: dict[ResourceKey, SubscriptionRoute] = {}
        for route in table.subscriptions():
            key = route.target_key
            current[key] = route
            old = previous.get(key)
            if old is None or old.target != route.target:
                self.dispatcher.update_target(key, route.target)
                self.status.take_kept(route, self.dispatcher.health(key))
            if old is not None and old.generation != route.generation and self.dispatcher.resume(key):
                self._notice(route.key, "Normal", "Resumed", "spec changed: delivery resumed")
        for key in previous.keys() - current.keys():
            if key in table.results:
                # Not routed for now (it stopped compiling): keep its counters for when it comes back.
                self.status.keep(previous[key], self.dispatcher.health(key))
            self._spawn(self.dispatcher.remove_target(key, drain_deadline=self.settings.drain_seconds))
            self._health_seen.pop(key, None)
            self.metrics.forget_subscription(key)
        for gone in self.table.results.keys() - table.results.keys():
            self.forget(gone)
        self._routes_by_target = current
        self._pull_keys = frozenset(key for key, route in current.items() if route.style == "pull")
        self.table = table
        self.metrics.routing_version.set(table.version)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for result in table.results.values():
            counts[(result.key.kind, str(result.ready).lower())] += 1
            ready_condition(self.status.conditions, result)  # stamps lastTransitionTime when Ready flips
        for kind in (EVENT, EVENT_SUBSCRIPTION, CONSUMER, SOURCE):
            for ready in ("true", "false"):
                self.metrics.routing_resources.labels(kind.kind, ready).set(counts.get((kind.kind, ready), 0))
        self.ready.set()

    def forget(self, key: ResourceKey) -> None:
        """A deleted resource takes its counters and conditions along: one re-created under the same name
        (a new object in Kubernetes) starts from zero."""
        self.status.forget(key)
        if key.kind != EVENT_SUBSCRIPTION.kind:
            return
        # A subscription's key is its key on the delivery bus, too.
        self.message_store.forget(key)
        if key in self.dispatcher.target_keys():
            # Re-created before any table dropped it (delete + create within one compile): same lane,
            # new object, so its health starts over.
            self.dispatcher.health(key).reset()
            self._health_seen.pop(key, None)

    def seed_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Continue from the status a previous process wrote, so a restart does not reset counters."""
        route = self._routes_by_target.get(key)
        self.status.seed(key, status, route, None if route is None else self.dispatcher.health(key))

    async def _on_paused(self, target_key: ResourceKey, reason: str, message: str) -> None:
        route = self._routes_by_target.get(target_key)
        if route is not None:
            self._notice(route.key, "Warning", reason, message)

    # ------------------------------------------------------------------------------ fan-out

    def _plan(
        self, table: RoutingTable, events: Sequence[CloudEvent], namespace: str | None
    ) -> tuple[list[tuple[ResourceKey, CloudEvent]], list[tuple[str, Sequence[str]]]]:
        """Every (subscription, event) delivery, and each event's type and where it is published."""
        plan: list[tuple[ResourceKey, CloudEvent]] = []
        placements: list[tuple[str, Sequence[str]]] = []
        defining = table.namespaces_defining_by_type
        for event in events:
            attributes = event.attributes
            type_ = attributes["type"]  # event.type without the property call
            if type(type_) is not str:
                type_ = str(type_)
            namespaces: Sequence[str]
            if namespace is not None:
                namespaces = (namespace,)
            else:
                # An undefined type only gets here with --allow-unknown-types: the admin's opt-in to
                # publish it wherever it is subscribed.
                namespaces = defining.get(type_) or table.namespaces_subscribing(type_)
            data = event.data
            for ns in namespaces:
                for route in table.match(ns, attributes, data):
                    plan.append((route.target.key, event))
            placements.append((type_, namespaces))
        return plan, placements

    def _replan(
        self, events: Sequence[CloudEvent], namespace: str | None, created: list[tuple[ResourceKey, str]]
    ) -> tuple[
        RoutingTable,
        list[tuple[ResourceKey, CloudEvent]],
        list[tuple[str, Sequence[str]]],
        list[tuple[ResourceKey, str]],
        list[tuple[ResourceKey, CloudEvent]],
    ]:
        """The table was swapped while a publish waited: drop its pending records (emptying ``created``,
        so a failure from here on discards nothing twice) and plan again from the new table. (The same
        table gives the same plan, so its pending records stand as they are.)"""
        table = self.table
        self.recorder.discard(created)
        created.clear()
        plan, placements = self._plan(table, events, namespace)
        return (
            table,
            plan,
            placements,
            self.recorder.record_stored(plan, now=self.clock()),
            self._pushed(plan),
        )

    async def publish(self, events: Sequence[CloudEvent], namespace: str | None = None) -> int:
        """Hand events to delivery, all or nothing; returns how many deliveries were queued.

        An event is published in ``namespace`` (a Consumer's, or the one named in the /events path), or,
        without one, in every namespace whose Events define its type; it reaches only the subscriptions
        of those namespaces. Either every delivery is queued or none is: a sender told to retry (503)
        never causes a duplicate of half a fan-out. Raises a :class:`~openconnector.refusal.Refusal`
        (nothing of the events was queued).
        """
        started = self.publish_now(events, namespace)
        if isinstance(started, int):
            return started
        return await self.publish_waiting(events, namespace, started)

    def publish_now(
        self, events: Sequence[CloudEvent], namespace: str | None = None
    ) -> int | WaitingPublish | None:
        """The part of :meth:`publish` that never awaits: with the memory bus most publishes end here
        (no coroutine, no timer). Returns the deliveries queued (or raises the Refusal); a
        :class:`WaitingPublish` when the memory bus lacks room now; None when the bus's store awaits
        (JetStream). Either of the last two goes on in :meth:`publish_waiting`."""
        offer_now = self._offer_now
        if offer_now is None:
            return None
        try:
            table = self.table
            plan, placements = self._plan(table, events, namespace)
            # One clock reading for the records and the status, unless the publish waits (then the status
            # gets the time it was published).
            now = self.clock()
            if not plan:  # nothing to queue: only a closed bus refuses
                if self.dispatcher.closed:
                    raise DeliveryClosedError("the dispatcher is closed")
                self._count_published(table, placements, now)
                return 0
            # Recorded before the bus stores it, as a durable bus needs (it may deliver before its store
            # call returns); discarded if the bus refuses.
            created = self.recorder.record_stored(plan, now=now)
            pushed = self._pushed(plan) if self._pull_keys else plan
            try:
                if pushed:
                    result = offer_now(pushed)
                elif self.dispatcher.closed:
                    raise DeliveryClosedError("the dispatcher is closed")
                else:
                    result = _NOTHING_QUEUED
                if result.too_large:
                    raise Refusal(413, "event-too-large", result.detail)
            except BaseException:
                self.recorder.discard(created)  # nothing of the events was stored
                raise
        except (DeliveryClosedError, BusUnavailableError, EventTooLargeError) as error:
            raise _refusal_of(error) from None
        if not result.accepted:
            return WaitingPublish(table, plan, placements, created, pushed, result)
        self._count_published(table, placements, now)
        return result.queued + (len(plan) - len(pushed))

    async def publish_waiting(
        self, events: Sequence[CloudEvent], namespace: str | None, waiting: WaitingPublish | None
    ) -> int:
        """The rest of a :meth:`publish` that :meth:`publish_now` could not end: wait for room in the
        memory bus (``waiting``: what it prepared and was refused), or store with a bus whose store
        awaits (``waiting`` None), within ``submit_timeout``."""
        created: list[tuple[ResourceKey, str]] = []
        try:
            try:
                if waiting is not None:
                    # The memory bus, refused for now: its waits end at one deadline (a timer per wait,
                    # not an asyncio.timeout per sender; nothing else is awaited here).
                    table, plan, placements, created, pushed, result = waiting
                    offer_now = self._offer_now
                    wait_for_room = self._wait_for_room
                    assert offer_now is not None
                    assert wait_for_room is not None
                    deadline = asyncio.get_running_loop().time() + self.settings.submit_timeout
                    while True:
                        await wait_for_room(result.full, needed_bytes=result.budget_needed, deadline=deadline)
                        if self.table is not table:
                            table, plan, placements, created, pushed = self._replan(
                                events, namespace, created
                            )
                        result = offer_now(pushed)
                        if result.too_large:
                            raise Refusal(413, "event-too-large", result.detail)
                        if result.accepted:
                            break
                else:  # a bus whose store awaits (JetStream): bound as a whole
                    table = self.table
                    plan, placements = self._plan(table, events, namespace)
                    # Recorded before the bus stores it: a durable bus may deliver before store returns.
                    created = self.recorder.record_stored(plan, now=self.clock()) if plan else []
                    pushed = self._pushed(plan) if self._pull_keys else plan
                    # The store ends by this deadline itself (TimeoutError past it): no timer per sender.
                    deadline = asyncio.get_running_loop().time() + self.settings.submit_timeout
                    if self.message_log is not None and self.message_log.flush_needed:
                        await self.message_log.flush()
                    result = await self.dispatcher.store(pushed, deadline=deadline)
                    if result.too_large:
                        raise Refusal(413, "event-too-large", result.detail)
                    if not result.accepted:  # refused for now: wait for this caller's turn, then again
                        async with asyncio.timeout_at(deadline):
                            while True:
                                full, needed = result.full, result.budget_needed
                                await self.dispatcher.wait_for_room(full, needed_bytes=needed)
                                if self.table is not table:
                                    table, plan, placements, created, pushed = self._replan(
                                        events, namespace, created
                                    )
                                if self.message_log is not None:
                                    await self.message_log.flush()
                                result = await self.dispatcher.store(pushed, deadline=deadline)
                                if result.too_large:
                                    raise Refusal(413, "event-too-large", result.detail)
                                if result.accepted:
                                    break
            except BaseException:
                self.recorder.discard(created)  # nothing of the events was stored
                raise
        except (TimeoutError, DeliveryClosedError, BusUnavailableError, EventTooLargeError) as error:
            raise _refusal_of(error) from None
        self._count_published(table, placements, self.clock())
        return result.queued + (len(plan) - len(pushed))

    def _count_published(
        self, table: RoutingTable, placements: list[tuple[str, Sequence[str]]], now: float
    ) -> None:
        """The status counters and the emitted metric of published events (each type, where it went)."""
        events_by_namespace_type = table.events_by_namespace_type
        for type_, namespaces in placements:
            published = False
            for ns in namespaces:
                defined = events_by_namespace_type.get((ns, type_))
                if defined is not None:
                    self.event_stats[defined.key].record_published(now)
                    published = True
            # Types no Event defines (--allow-unknown-types) share one label: senders choose them freely.
            # (An Event found above defines the type: namespaces_defining lists its namespace.)
            label = type_ if published or type_ in table.namespaces_defining_by_type else "other"
            emitted = self._emitted.get(label)
            if emitted is None:
                emitted = self._emitted[label] = self.metrics.child(self.metrics.events_emitted, label)
            emitted.value += 1

    def _pushed(self, plan: list[tuple[ResourceKey, CloudEvent]]) -> list[tuple[ResourceKey, CloudEvent]]:
        """The deliveries of ``plan`` the bus delivers: pull subscriptions keep theirs in the message log."""
        pull_keys = self._pull_keys
        return [entry for entry in plan if entry[0] not in pull_keys] if pull_keys else plan

    def build_event_for(self, event: EventRoute, data: Any, *, subject: str | None = None) -> CloudEvent:
        """A new NL GOV event of ``event``'s type (sequence per Event, starting at 1)."""
        sequence = self.sequences.next(_sequence_name(event.key))
        if subject is None:  # type, source and dataschema were checked when the Event compiled
            return build_checked_event(event.type, event.source, data, event.dataschema, sequence)
        return build_event(
            type=event.type,
            source=event.source,
            data=data,
            dataschema=event.dataschema,
            subject=subject,
            sequence=sequence,
            # A subject (from a register's answer) was not checked: the whole event is validated.
            validate=True,
        )

    def nlgov_problems(self, event: EventRoute) -> tuple[Problem, ...]:
        """``check_nlgov`` of every event :meth:`build_event_for` builds for ``event``: it reads only their
        type and source (the other attributes it checks are the builder's own, always conformant), so it
        is worked out once per (type, source)."""
        return _built_nlgov_problems(event.type, event.source)

    # ---------------------------------------------------------------------------- status

    def status_body(self, key: ResourceKey) -> dict[str, Any] | None:
        """The status subresource body of one resource, or None if the gateway does not know it."""
        result = self.table.results.get(key)
        if result is None:
            return None
        route = self._routes_by_target.get(key)
        return self.status.body(result, route, None if route is None else self.dispatcher.health(key))

    def tick(self) -> None:
        """Periodic: Kubernetes Events on health transitions (the health gauges are read when scraped)."""
        for target_key, route in self._routes_by_target.items():
            cond = self.dispatcher.health(target_key).condition
            self._track_health(route, cond.status, cond.reason, cond.message)

    async def _tick_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.tick()
            except Exception:  # metrics must never take the gateway down
                log.exception("health tick failed")

    def _track_health(self, route: SubscriptionRoute, status: str, reason: str, message: str) -> None:
        """Warn once on a transition to unhealthy, and say so once it recovers."""
        before = self._health_seen.get(route.target_key)
        self._health_seen[route.target_key] = status
        if before == status:
            return
        if status == "False" and reason == "DeliveryFailing":
            self._notice(route.key, "Warning", "Unhealthy", message)
        elif status == "True" and before == "False":
            self._notice(route.key, "Normal", "Recovered", message)

    def status_view(self) -> list[dict[str, Any]]:
        """Everything, for ``GET /api/v1alpha1/status`` (standalone mode's kubectl get)."""
        return status_view(self.table.results.values(), self.status_body)

    def health_samples(self) -> Iterator[SubscriptionHealth]:
        """The health gauges of every routed subscription, computed when /metrics is scraped."""
        for target_key in self._routes_by_target:
            namespace, name = target_key.namespace, target_key.name
            health = self.dispatcher.health(target_key)
            value = {"True": 1, "False": 0}.get(health.condition.status, -1)
            yield SubscriptionHealth(
                namespace, name, value, health.success_ratio, self.dispatcher.queue_depth(target_key)
            )


GATEWAY_KEY = web.AppKey("gateway", Gateway)
