"""What a Consumer does with one webhook request, step by step.

The gateway's handler (``gateway/webhooks.py``) finds the Consumer and calls :func:`receive`, which runs
the steps in order and stops at the first that refuses (a :class:`~openconnector.refusal.Refusal`): the
client address, the body within the limit, authentication and replay refusal, JSON, mapping, the Event's
schema, the target, then emission. Everything that needs the network or the gateway's state (reading the
body, calling the target, building and publishing the event, counters) goes through
:class:`ConsumerPorts`, so this module has no HTTP server or client in it.

The target must accept before anything is emitted. Once the target holds the payload, a failure to emit
is not a refusal (the sender's retry would store it twice): the answer is a success that says what is
missing (``eventError``), and the port records it in the Consumer's status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from openconnector.ce import CloudEvent, CloudEventError, Problem
from openconnector.ce.depth import json_depth_exceeds
from openconnector.consumers.allow_list import IpAddress
from openconnector.consumers.replay import ReplayStore, admit
from openconnector.consumers.targets import TargetCall, object_id, target_answer, target_call
from openconnector.consumers.verifiers import NO_AUTH, AuthOutcome
from openconnector.mapping import MappingError
from openconnector.mapping.runner import apply_mapping
from openconnector.refusal import Refusal

if TYPE_CHECKING:
    from openconnector.routing.table import ConsumerRoute, EventRoute

__all__ = [
    "ConsumerPorts",
    "InboundRequest",
    "WebhookAnswer",
    "event_disabled_reason",
    "ingest",
    "receive",
]

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "text/json")


# NamedTuples: immutable, and built per request at a fraction of a frozen dataclass's cost.
class InboundRequest(NamedTuple):
    headers: Mapping[str, str]
    query: Mapping[str, str]
    content_type: str
    body: bytes


class WebhookAnswer(NamedTuple):
    status: int
    body: dict[str, Any]


class ConsumerPorts(Protocol):
    """What :func:`receive` needs from the gateway (and from the request being served)."""

    @property
    def replay_store(self) -> ReplayStore: ...

    @property
    def max_json_depth(self) -> int:
        """The deepest nesting the gateway accepts (``--max-json-depth``)."""

    def now(self) -> float: ...

    def client_address(self) -> IpAddress | None:
        """The client: the peer, or what trusted proxies say it is (None when unparseable)."""

    def request_now(self, limit: int) -> InboundRequest | None:
        """:meth:`read_request` when the whole body has already arrived (most small requests), without
        awaiting; None when it has not (then await :meth:`read_request`)."""

    async def read_request(self, limit: int) -> InboundRequest:
        """The request with its body, at most ``limit`` bytes (a 413 Refusal as soon as it is larger)."""

    def received(self, consumer: ConsumerRoute) -> None:
        """Count a request to the Consumer."""

    def refused(self, consumer: ConsumerRoute, refusal: Refusal) -> None:
        """Count and record a refused request."""

    def forwarded(self, consumer: ConsumerRoute) -> None:
        """Count an accepted request."""

    async def call_target(self, consumer: ConsumerRoute, call: TargetCall) -> tuple[int, bytes]:
        """POST ``call``; (status, at most MAX_ANSWER_BYTES of the answer); Refusal when unreachable."""

    def build_event(self, event: EventRoute, data: Any, subject: str | None) -> CloudEvent:
        """A new event of ``event``'s type; CloudEventError when it cannot be built."""

    def nlgov_problems(self, event: EventRoute, built: CloudEvent) -> Sequence[Problem]:
        """``check_nlgov(built)`` of an event :meth:`build_event` built for ``event``."""

    def publish(self, event: CloudEvent, namespace: str) -> Awaitable[object]:
        """Hand the event to delivery; awaiting it raises a Refusal (503 + Retry-After) when not queued."""

    def stored_not_emitted(self, consumer: ConsumerRoute, why: str) -> None:
        """Record that the target holds the payload but no event went out."""


def event_disabled_reason(event: EventRoute) -> str:
    """Why a Consumer emits nothing: its Event is disabled (also the Consumer's status message)."""
    return f"Event {event.key.name!r} is disabled (isEnabled: false): no event is emitted"


def _is_json(content_type: str) -> bool:
    if content_type == "application/json":  # what nearly every sender says: nothing to split
        return True
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence in _JSON_TYPES or essence.endswith("+json")


def _parse_payload(request: InboundRequest) -> Any:
    if not _is_json(request.content_type):
        raise Refusal(
            415,
            "unsupported-media-type",
            f"expected a JSON body, got Content-Type {request.content_type!r}",
        )
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as error:
        raise _invalid_json(error) from None


def _invalid_json(error: orjson.JSONDecodeError) -> Refusal:
    return Refusal(400, "invalid-json", f"the body is not valid JSON: {error}")


def _too_deep(max_depth: int) -> Refusal:
    return Refusal(422, "too-deep", f"the body nests deeper than {max_depth} levels", label="too-deep")


def _depth_exceeds(payload: Any, limit: int) -> bool:
    """:func:`json_depth_exceeds` of a decoded body; most webhook bodies are one object of scalars (depth 1),
    told without the walk."""
    if type(payload) is dict and limit >= 1 and _SCALARS.issuperset(map(type, payload.values())):
        return False
    return json_depth_exceeds(payload, limit)


_SCALARS = frozenset((str, int, float, bool, type(None)))


async def _mapped(consumer: ConsumerRoute, payload: Any, max_depth: int) -> Any:
    if consumer.mapping is None:
        return payload
    try:  # off the event loop, within a cost budget (openconnector.mapping.runner)
        return await apply_mapping(consumer.mapping, payload, max_depth)
    except MappingError as error:
        raise Refusal(
            422,
            "mapping-budget-exceeded" if error.budget else "mapping-failed",
            f"Mapping {error.mapping!r} failed at {error.path}: {error.message}",
            label="mapping",
            path=error.path,
            mapping=error.mapping,
        ) from None


def _schema_violations(event: EventRoute | None, data: Any) -> Sequence[str]:
    if event is None or not event.enabled or event.validate_data is None:
        return ()
    return event.validate_data(data)


async def receive(consumer: ConsumerRoute, ports: ConsumerPorts) -> WebhookAnswer | Refusal:
    """Serve one request to ``consumer``: its answer, or the Refusal of the first step that failed.

    Every request is counted as received, then as forwarded or refused (with the refusal's label)."""
    ports.received(consumer)
    try:
        allow_list = consumer.allow_list
        # An empty allow-list allows everyone: the client address is only worked out when it matters.
        if allow_list and not allow_list.allows(ports.client_address()):
            raise Refusal(403, "forbidden", "the client address is not allowed", label="ip-not-allowed")
        limit = consumer.max_body_bytes
        # Most bodies come with the head: taken as they are, without a coroutine for the read.
        request = ports.request_now(limit)
        if request is None:
            request = await ports.read_request(limit)
        verifier = consumer.verifier
        if verifier.config.type == "none":  # verify()'s answer, without the call: it reads nothing
            outcome = NO_AUTH
        else:
            outcome = verifier.verify(
                headers=request.headers, query=request.query, body=request.body, now=ports.now()
            )
        event = consumer.event
        if (
            consumer.mapping is None
            and consumer.target is None
            and event is not None
            and event.enabled
            and (outcome.replay_ttl is None or outcome.message_id is None)
        ):
            # The common Consumer (no replay check, mapping or target): everything up to the publish is
            # synchronous, so it runs here, without a coroutine per step: the same steps in the same
            # order as _accept() (tests/unit/test_s5_request_fast_path.py). That matters most for the
            # many senders that wait for queue room: they are resumed through every frame.
            max_depth = ports.max_json_depth
            if request.content_type == "application/json":  # _checked_payload(), inline for the common type
                try:
                    payload = orjson.loads(request.body)
                except orjson.JSONDecodeError as error:
                    raise _invalid_json(error) from None
                if _depth_exceeds(payload, max_depth):
                    raise _too_deep(max_depth)
            else:
                payload = _checked_payload(request, max_depth)
            if event.validate_data is not None:
                _check_schema(event, payload)
            built = _built_event(consumer, event, payload, None, ports)
            if isinstance(built, str):
                raise Refusal(422, "emission-failed", built, label="emission")
            try:
                await ports.publish(built, consumer.key.namespace)
            except Refusal as refused:
                raise _backlog(refused) from None
            answer = WebhookAnswer(200, {"eventId": built.id})
        else:
            answer = await _verified(consumer, request, outcome, ports)
    except Refusal as refusal:
        ports.refused(consumer, refusal)
        return refusal
    ports.forwarded(consumer)
    return answer


async def ingest(consumer: ConsumerRoute, request: InboundRequest, ports: ConsumerPorts) -> WebhookAnswer:
    """Authenticate, map, validate, store and emit one request whose client and size were accepted."""
    outcome = consumer.verifier.verify(
        headers=request.headers, query=request.query, body=request.body, now=ports.now()
    )
    return await _verified(consumer, request, outcome, ports)


async def _verified(
    consumer: ConsumerRoute, request: InboundRequest, outcome: AuthOutcome, ports: ConsumerPorts
) -> WebhookAnswer:
    """:func:`ingest` of a request whose credentials were verified (``outcome``)."""
    if outcome.replay_ttl is not None and outcome.message_id is not None:  # what admit() acts on
        outcome = await admit(ports.replay_store, outcome, scope=str(consumer.key), now=ports.now())
    accepted = False
    try:
        answer = await _accept(consumer, request, ports)
        accepted = True
        return answer
    finally:
        # Not accepted (refused, failed, cancelled): the sender's retry with the same webhook-id must not
        # be refused as a replay.
        if not accepted and outcome.replay_key is not None:
            await ports.replay_store.forget(outcome.replay_key)


def _checked_payload(request: InboundRequest, max_depth: int) -> Any:
    """The decoded JSON body; a Refusal when it is not JSON or nests deeper than ``max_depth``."""
    payload = _parse_payload(request)
    if _depth_exceeds(payload, max_depth):
        raise _too_deep(max_depth)
    return payload


def _check_schema(event: EventRoute | None, data: Any) -> None:
    violations = _schema_violations(event, data)
    if violations:
        raise Refusal(
            422,
            "schema-violation",
            "the mapped object does not match the schema",
            label="schema",
            errors=[{"detail": v} for v in violations],
        )


def _built_event(
    consumer: ConsumerRoute, event: EventRoute, data: Any, subject: str | None, ports: ConsumerPorts
) -> CloudEvent | str:
    """The event, or why it cannot be emitted (it cannot be built, or breaks the NL GOV profile)."""
    try:
        built = ports.build_event(event, data, subject)
    except CloudEventError as error:
        if consumer.target is None:  # nothing stored: the sender may fix and retry
            return str(error)
        return f"the event could not be built: {error}"
    if event.profile == "nl-gov":
        profile_problems = ports.nlgov_problems(event, built)
        if profile_problems:
            return "the event breaks the NL GOV profile: " + "; ".join(p.detail for p in profile_problems)
    return built


def _backlog(refused: Refusal) -> Refusal:
    """A refused publish of a targetless Consumer: counted as a backlog refusal in its status."""
    return Refusal(refused.status, refused.slug, refused.detail, label="backlog", headers=refused.headers)


async def _accept(consumer: ConsumerRoute, request: InboundRequest, ports: ConsumerPorts) -> WebhookAnswer:
    max_depth = ports.max_json_depth
    payload = _checked_payload(request, max_depth)
    if consumer.mapping is not None:  # no coroutine for the many Consumers without one
        payload = await _mapped(consumer, payload, max_depth)
    event = consumer.event
    if event is not None and not event.enabled and consumer.target is None:
        # Nothing would be stored and nothing emitted: a 2xx would claim work that is not done.
        raise Refusal(409, "event-disabled", event_disabled_reason(event))
    # The Event's schema governs the emitted data, so the mapped object is checked before anything is
    # stored. A register's answer (emitted instead) is not checked again: the register stored it under
    # its own schema, and refusing after the store would only lose the event.
    _check_schema(event, payload)

    answer: dict[str, Any] = {}
    status = 200
    subject: str | None = None
    emitted_data: Any = payload
    target = consumer.target
    if target is not None:
        call = target_call(target, consumer.target_type, consumer.schema, payload)
        target_status, raw = await ports.call_target(consumer, call)
        stored = target_answer(target_status, raw)
        answer["targetStatus"] = target_status
        if consumer.target_type == "register/schema":
            subject = object_id(stored, payload)
            if isinstance(stored, dict):
                emitted_data = stored
            status = 201
            answer["id"] = subject

    if event is None:
        return WebhookAnswer(status, answer)
    if not event.enabled:
        answer["eventError"] = event_disabled_reason(event)
        return WebhookAnswer(status, answer)

    def not_emitted(why: str) -> WebhookAnswer:
        ports.stored_not_emitted(consumer, why)
        answer["eventError"] = why
        return WebhookAnswer(status, answer)

    # Only a target's answer can nest too deep here (it could not be sent): the payload was checked above,
    # a mapping's result by the mapping runner, so the same object is not walked twice.
    if emitted_data is not payload and json_depth_exceeds(emitted_data, max_depth):
        return not_emitted(f"the stored object nests deeper than {max_depth} levels")
    built = _built_event(consumer, event, emitted_data, subject or None, ports)
    if isinstance(built, str):
        if target is None:  # nothing stored yet: the sender may fix and retry
            raise Refusal(422, "emission-failed", built, label="emission")
        return not_emitted(built)
    try:
        await ports.publish(built, consumer.key.namespace)
    except Refusal as refused:
        if target is None:  # counted as a backlog refusal in the Consumer's status
            raise _backlog(refused) from None
        return not_emitted(refused.detail)
    answer["eventId"] = built.id
    return WebhookAnswer(status, answer)
