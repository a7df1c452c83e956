"""The message service: what the HTTP API, the web page (``openconnector.ui``) and tests call.

Every method raises :class:`~openconnector.refusal.Refusal` (404 unknown subscription or message, 400
bad filter or cursor, 409 wrong style, 503 bus unavailable); access control is the caller's job
(:mod:`openconnector.messages.access`), done before calling.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION
from openconnector.ce import CloudEvent
from openconnector.delivery.outcomes import BusUnavailableError, DeliveryClosedError, EventTooLargeError
from openconnector.messages.access import Authorizer
from openconnector.messages.model import (
    MessagePage,
    MessageRecord,
    MessageStatus,
    SubscriptionSummary,
    decode_cursor,
    encode_cursor,
)
from openconnector.messages.recorder import MessageWriter
from openconnector.messages.store import MemoryMessageStore, StoredMessage
from openconnector.refusal import Refusal
from openconnector.status.bodies import SUBSCRIPTION_COUNTERS

if TYPE_CHECKING:
    from openconnector.gateway.core import Gateway


def _key(namespace: str, name: str) -> ResourceKey:
    """The key of subscription ``namespace``/``name``: of its route, its lane and its message log."""
    return ResourceKey(EVENT_SUBSCRIPTION.kind, namespace, name)


__all__ = [
    "AUTHORIZER_KEY",
    "DEFAULT_PAGE_SIZE",
    "FAILED_STATUSES",
    "MAX_PAGE_SIZE",
    "MESSAGES_KEY",
    "MessageService",
    "PullBatch",
    "parse_statuses",
]

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: ``--status failed`` and the default of replay: what did not reach the subscriber.
FAILED_STATUSES = frozenset({MessageStatus.DEAD_LETTERED, MessageStatus.DROPPED})
#: Seconds a pull on a durable log waits for this process's view to reach a cursor's position (another
#: process handed it out, and this one has not read the stream that far yet, or is still reading it
#: back after a start), checked every ``_CURSOR_POLL`` seconds, before it refuses the cursor.
_CURSOR_WAIT = 2.0
_CURSOR_POLL = 0.02


def parse_statuses(values: Collection[str] | str | None) -> frozenset[MessageStatus] | None:
    """Status filter: comma-separated statuses, ``failed`` = dead-lettered and dropped; None = all."""
    if values is None:
        return None
    items = values.split(",") if isinstance(values, str) else list(values)
    wanted: set[MessageStatus] = set()
    for item in (raw.strip() for raw in items):
        if not item:
            continue
        if item == "failed":
            wanted |= FAILED_STATUSES
            continue
        try:
            wanted.add(MessageStatus(item))
        except ValueError:
            choices = ", ".join([*(s.value for s in MessageStatus), "failed"])
            raise Refusal(400, "invalid-filter", f"status: {item!r} is not one of {choices}") from None
    return frozenset(wanted) or None


@dataclass(slots=True)
class PullBatch:
    events: list[CloudEvent]
    next_cursor: str
    acknowledged: int


class MessageService:
    """Reads and acts on the message store of one gateway."""

    def __init__(
        self, gateway: Gateway, store: MemoryMessageStore, writer: MessageWriter | None = None
    ) -> None:
        self._gateway = gateway
        self.store = store
        self.writer: MessageWriter = writer or store

    @property
    def durable(self) -> bool:
        return bool(getattr(self.writer, "durable", False))

    # --------------------------------------------------------------------------------- lookups

    def _route_style(self, namespace: str, name: str) -> str:
        """The subscription's style; 404 when the gateway does not know it."""
        key = _key(namespace, name)
        result = self._gateway.table.results.get(key)
        if result is None:
            raise Refusal(404, "unknown-subscription", f"no subscription {namespace}/{name} is known to you")
        return str(result.extra.get("style", "push"))

    def _require_routed(self, namespace: str, name: str, what: str) -> None:
        """409 ``not-routed`` unless the subscription is routed now: compiled (ready) and not paused
        (``spec.status: paused``). Nothing is handed to the bus for one that is not."""
        key = _key(namespace, name)
        route = self._gateway.route_of(key)
        if route is None or route.paused:
            raise _not_routed(key, what)

    def subscriptions(self) -> list[tuple[str, str]]:
        """(namespace, name) of every EventSubscription the gateway knows, sorted."""
        return sorted(
            (key.namespace, key.name)
            for key in self._gateway.table.results
            if key.kind == EVENT_SUBSCRIPTION.kind
        )

    async def list_subscriptions(self, namespaces: Collection[str] | None) -> list[SubscriptionSummary]:
        """Every subscription (in ``namespaces`` when given) with its health and counters."""
        gateway = self._gateway
        found: list[SubscriptionSummary] = []
        for namespace, name in self.subscriptions():
            if namespaces is not None and namespace not in namespaces:
                continue
            key = _key(namespace, name)
            result = gateway.table.results[key]
            body = gateway.status_body(key) or {}
            conditions = {c.get("type"): c for c in body.get("conditions") or []}
            ready = conditions.get("Ready") or {}
            healthy = conditions.get("Healthy") or {}
            reason = None
            if ready.get("status") != "True":
                reason = ready.get("reason")
            elif healthy.get("status") == "False":
                reason = healthy.get("reason")
            counters: dict[str, Any] = {
                field: body[field] for field in SUBSCRIPTION_COUNTERS if field in body
            }
            found.append(
                SubscriptionSummary(
                    namespace=namespace,
                    name=name,
                    ready=bool(result.ready),
                    healthy=str(healthy.get("status", "Unknown")),
                    phase=body.get("phase"),
                    reason=reason,
                    style=str(result.extra.get("style", "push")),
                    counters=counters,
                    stored_messages=self.store.count(key),
                )
            )
        return found

    async def list_messages(
        self,
        namespace: str,
        name: str,
        *,
        status: str | Collection[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> MessagePage:
        """A page of the subscription's messages, newest first; ``next_cursor`` continues after it."""
        self._route_style(namespace, name)
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise Refusal(400, "invalid-filter", f"limit: must be 1 to {MAX_PAGE_SIZE}, got {limit}")
        statuses = parse_statuses(status)
        before = decode_cursor(cursor, "list") if cursor else None
        items: list[MessageRecord] = []
        last = 0
        more = False
        for stored in self.store.newest_first(_key(namespace, name), before):
            record = stored.record
            received = record.received or record.time
            if since is not None and received < since:
                break  # newest first: everything after this is older still
            if until is not None and received >= until:
                continue
            if statuses is not None and record.status not in statuses:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(record)
            last = record.sequence
        return MessagePage(items, encode_cursor("list", last) if more else None)

    async def get_message(self, namespace: str, name: str, message_id: str) -> MessageRecord:
        return self._stored(namespace, name, message_id).record

    def _stored(self, namespace: str, name: str, message_id: str) -> StoredMessage:
        self._route_style(namespace, name)
        stored = self.store.get(_key(namespace, name), message_id)
        if stored is None:
            raise Refusal(404, "unknown-message", f"no message {message_id} is kept for {namespace}/{name}")
        return stored

    async def messages_for_event(
        self, event_id: str, namespaces: Collection[str] | None
    ) -> list[MessageRecord]:
        """The messages of one event id across subscriptions (in ``namespaces`` when given)."""
        return sorted(
            (
                stored.record
                for stored in self.store.for_event(event_id)
                if namespaces is None or stored.record.namespace in namespaces
            ),
            key=lambda record: (record.namespace, record.subscription),
        )

    # --------------------------------------------------------------------------------- actions

    async def resend(self, namespace: str, name: str, message_id: str, *, by: str = "") -> MessageRecord:
        """A new delivery of the stored event to this subscription; its attempts join the same message."""
        if self._route_style(namespace, name) == "pull":
            raise Refusal(409, "pull-subscription", f"{namespace}/{name} is a pull subscription: read it")
        stored = self._stored(namespace, name, message_id)
        self._require_routed(namespace, name, "resent")
        key = _key(namespace, name)
        await self._deliver_again(key, [stored])
        self.writer.mark(key, message_id, MessageStatus.PENDING, f"resent by {by}" if by else "resent")
        return stored.record

    async def replay(
        self,
        namespace: str,
        name: str,
        *,
        since: datetime.datetime,
        statuses: Collection[str] = ("dead-lettered", "dropped"),
        by: str = "",
    ) -> int:
        """Resend every message received since ``since`` whose status is one of ``statuses``."""
        if self._route_style(namespace, name) == "pull":
            raise Refusal(409, "pull-subscription", f"{namespace}/{name} is a pull subscription: read it")
        wanted = parse_statuses(list(statuses)) or FAILED_STATUSES
        self._require_routed(namespace, name, "replayed")
        key = _key(namespace, name)
        chosen: list[StoredMessage] = []
        for stored in self.store.newest_first(key, None):
            record = stored.record
            if (record.received or record.time) < since:
                break
            if record.status in wanted:
                chosen.append(stored)
        chosen.reverse()  # oldest first, as they came
        for start in range(0, len(chosen), 100):
            await self._deliver_again(key, chosen[start : start + 100])
        for stored in chosen:
            self.writer.mark(
                key, stored.record.id, MessageStatus.PENDING, f"replayed by {by}" if by else "replayed"
            )
        return len(chosen)

    async def _deliver_again(self, key: ResourceKey, messages: Sequence[StoredMessage]) -> None:
        plan = [(key, stored.event) for stored in messages]
        bus = self._gateway.dispatcher
        try:
            store_again = getattr(bus, "store_again", None)
            if store_again is not None:
                # JetStream: a fresh message id, or the duplicate window would swallow the resend.
                result = await store_again(plan, uuid.uuid4().hex)
            else:
                result = await bus.store(plan)
        except (BusUnavailableError, DeliveryClosedError) as error:
            raise Refusal(
                503,
                "bus-unavailable",
                f"the delivery bus cannot take it now: {error}",
                headers={"Retry-After": "5"},
            ) from None
        except EventTooLargeError as error:
            raise Refusal(413, "event-too-large", str(error)) from None
        if result.skipped:
            raise _not_routed(key, "resent")
        if not result.accepted:
            raise Refusal(
                503, "delivery-backlog", f"cannot queue it now: {result.detail}", headers={"Retry-After": "5"}
            )

    # ------------------------------------------------------------------------------------ pull

    async def pull(self, namespace: str, name: str, *, limit: int, cursor: str | None) -> PullBatch:
        """Up to ``limit`` unacknowledged events of a pull subscription, oldest first. ``cursor`` (the
        one the previous pull returned) acknowledges everything before it."""
        if self._route_style(namespace, name) != "pull":
            raise Refusal(
                409, "push-subscription", f"{namespace}/{name} is delivered (style push), not pulled"
            )
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise Refusal(400, "invalid-filter", f"limit: must be 1 to {MAX_PAGE_SIZE}, got {limit}")
        key = _key(namespace, name)
        path = key.namespaced_name
        acknowledged = 0
        if cursor:
            # Only a cursor of this subscription, and never beyond what its pulls could have returned:
            # another subscription's cursor, or a made-up one, would acknowledge events nobody read.
            position = decode_cursor(cursor, "pull", path)
            if not await self._reaches(key, position):
                raise Refusal(400, "invalid-cursor", "cursor: not a cursor this API handed out")
            acknowledged = self.writer.acknowledge(key, position, datetime.datetime.now(datetime.UTC))
        after = self.store.pull_position(key)
        events: list[CloudEvent] = []
        last = after
        for stored in self.store.oldest_first(key, after):
            if len(events) == limit:
                break
            if stored.record.status is MessageStatus.PENDING:
                events.append(stored.event)
            last = stored.record.sequence
        if acknowledged:
            self._gateway.count_pulled(key, acknowledged)
        return PullBatch(events, encode_cursor("pull", last, path), acknowledged)

    async def _reaches(self, key: ResourceKey, position: int) -> bool:
        """Whether a pull of ``key`` could have handed out ``position``: at most the newest sequence its
        log has kept (:meth:`MemoryMessageStore.pull_bound`). On a durable log, another process may have
        handed it out before this one read that far: wait a little (``_CURSOR_WAIT``) for it."""
        if position <= self.store.pull_bound(key):
            return True
        if not self.durable:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CURSOR_WAIT
        while loop.time() < deadline:
            await asyncio.sleep(_CURSOR_POLL)
            if position <= self.store.pull_bound(key):
                return True
        return False

    def pending_pull(self, key: ResourceKey) -> int:
        return sum(
            1 for stored in self.store.oldest_first(key, self.store.pull_position(key))
            if stored.record.status is MessageStatus.PENDING
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {
            "durable": bool(getattr(self.writer, "durable", False)),
            "maxMessages": self.store.max_messages,
            "maxAgeSeconds": self.store.max_age,
        }


def _not_routed(key: ResourceKey, what: str) -> Refusal:
    return Refusal(
        409,
        "not-routed",
        f"{key.namespaced_name} is not routed now (paused, not ready or removed): nothing was {what}",
    )


MESSAGES_KEY = web.AppKey("messages", MessageService)
AUTHORIZER_KEY = web.AppKey("authorizer", Authorizer)
