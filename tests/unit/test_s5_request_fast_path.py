"""The targetless Consumer's fast path in ``consumers/ingest.receive`` gives the general path's answer.

``receive`` runs a Consumer without mapping, target or replay check (the common one) synchronously up to
the publish; every other request goes through ``ingest``. Here both run on the same request and fake
gateway, and must answer the same, count the same and publish the same."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent
from openconnector.ce.codec import CloudEventError, Problem
from openconnector.ce.emit import build_checked_event
from openconnector.consumers.allow_list import IpAddress, IpAllowList
from openconnector.consumers.ingest import InboundRequest, WebhookAnswer, ingest, receive
from openconnector.consumers.replay import ReplayGuard, ReplayStore
from openconnector.consumers.targets import TargetCall
from openconnector.consumers.verifiers import InboundAuthConfig, compile_verifier
from openconnector.refusal import Refusal
from openconnector.routing.table import ConsumerRoute, EventRoute

CONSUMER_KEY = ResourceKey("Consumer", "tenant", "zaken")
EVENT_KEY = ResourceKey("Event", "tenant", "zaak-created")


class FakePorts:
    """A gateway that records what the pipeline asks of it."""

    def __init__(
        self,
        body: bytes,
        content_type: str,
        *,
        max_depth: int,
        body_later: bool,
        build_fails: bool,
        profile_problems: Sequence[Problem],
        publish_refusal: Refusal | None,
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.max_depth = max_depth
        self.body_later = body_later
        self.build_fails = build_fails
        self.profile_problems = tuple(profile_problems)
        self.publish_refusal = publish_refusal
        self.calls: list[tuple[Any, ...]] = []
        self.published: list[CloudEvent] = []
        self._store = ReplayGuard()

    @property
    def replay_store(self) -> ReplayStore:
        return self._store

    @property
    def max_json_depth(self) -> int:
        return self.max_depth

    def now(self) -> float:
        return 1_700_000_000.0

    def client_address(self) -> IpAddress | None:
        return None

    def _request(self, limit: int) -> InboundRequest:
        if len(self.body) > limit:
            raise Refusal(413, "body-too-large", f"the body exceeds {limit} bytes", label="too-large")
        headers = {"Content-Type": self.content_type}
        return InboundRequest(headers, {}, self.content_type, self.body)

    def request_now(self, limit: int) -> InboundRequest | None:
        return None if self.body_later else self._request(limit)

    async def read_request(self, limit: int) -> InboundRequest:
        return self._request(limit)

    def received(self, consumer: ConsumerRoute) -> None:
        self.calls.append(("received",))

    def refused(self, consumer: ConsumerRoute, refusal: Refusal) -> None:
        self.calls.append(("refused", refusal.label, refusal.status))

    def forwarded(self, consumer: ConsumerRoute) -> None:
        self.calls.append(("forwarded",))

    async def call_target(self, consumer: ConsumerRoute, call: TargetCall) -> tuple[int, bytes]:
        raise AssertionError("a targetless Consumer calls no target")

    def build_event(self, event: EventRoute, data: Any, subject: str | None) -> CloudEvent:
        self.calls.append(("build", subject))
        if self.build_fails:
            raise CloudEventError([Problem("data", "data: cannot be encoded")])
        return build_checked_event(event.type, event.source, data, event.dataschema, len(self.calls))

    def nlgov_problems(self, event: EventRoute, built: CloudEvent) -> Sequence[Problem]:
        return self.profile_problems

    async def publish(self, event: CloudEvent, namespace: str) -> int:
        self.calls.append(("publish", namespace, orjson.dumps(event.data)))
        if self.publish_refusal is not None:
            raise self.publish_refusal
        self.published.append(event)
        return 1

    def stored_not_emitted(self, consumer: ConsumerRoute, why: str) -> None:
        self.calls.append(("not-emitted", why))


def _consumer(*, profile: str, violations: Sequence[str], max_body_bytes: int) -> ConsumerRoute:
    def validate(data: Any) -> list[str]:
        return list(violations)

    event = EventRoute(
        EVENT_KEY,
        "nl.example.zaak.created",
        "urn:nld:example",
        profile,  # type: ignore[arg-type]
        True,
        None,
        validate if violations else None,
    )
    return ConsumerRoute(
        CONSUMER_KEY,
        "zaken",
        compile_verifier(InboundAuthConfig(type="none")),
        IpAllowList(),
        max_body_bytes,
        None,
        None,
        None,
        None,
        None,
        event,
    )


async def _general(consumer: ConsumerRoute, ports: FakePorts) -> WebhookAnswer | Refusal:
    """``receive`` as it was before the fast path: every request through ``ingest``."""
    ports.received(consumer)
    try:
        request = await ports.read_request(consumer.max_body_bytes)
        answer = await ingest(consumer, request, ports)
    except Refusal as refusal:
        ports.refused(consumer, refusal)
        return refusal
    ports.forwarded(consumer)
    return answer


def _view(answer: WebhookAnswer | Refusal, ports: FakePorts) -> tuple[Any, ...]:
    """What a client and the gateway see of an answer (the event id replaced by the published one's index)."""
    if isinstance(answer, Refusal):
        return (
            "refusal",
            answer.status,
            answer.slug,
            answer.detail,
            answer.label,
            answer.headers,
            answer.errors,
            answer.members,
        )
    body = dict(answer.body)
    if "eventId" in body:
        assert [e.id for e in ports.published] == [body["eventId"]]
        body["eventId"] = "published"
    return ("answer", answer.status, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
bodies = st.one_of(
    json_values.map(orjson.dumps),
    st.binary(max_size=24),
    st.just(b'{"a": {"b": {"c": [1, [2, [3]]]}}}'),
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/json",
        "application/cloudevents+json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "APPLICATION/JSON",
    ]
)
refusals = st.one_of(
    st.none(),
    st.just(
        Refusal(
            503, "delivery-backlog", "delivery queues are full; retry later", headers={"Retry-After": "5"}
        )
    ),
    st.just(Refusal(413, "event-too-large", "the event is too large")),
)


@settings(max_examples=300, deadline=None)
@given(
    body=bodies,
    content_type=content_types,
    max_depth=st.integers(min_value=0, max_value=4),
    max_body_bytes=st.sampled_from([8, 1024]),
    profile=st.sampled_from(["nl-gov", "cloudevents"]),
    violations=st.sampled_from([(), ("data.zaak: required",), ("a", "b")]),
    build_fails=st.booleans(),
    profile_problems=st.sampled_from([(), (Problem("source", "source: not a URN"),)]),
    publish_refusal=refusals,
    body_later=st.booleans(),
)
async def test_fast_path_answers_counts_and_publishes_as_the_general_path(
    body: bytes,
    content_type: str,
    max_depth: int,
    max_body_bytes: int,
    profile: str,
    violations: Sequence[str],
    build_fails: bool,
    profile_problems: Sequence[Problem],
    publish_refusal: Refusal | None,
    body_later: bool,
) -> None:
    consumer = _consumer(profile=profile, violations=violations, max_body_bytes=max_body_bytes)
    runs = []
    for serve in (receive, _general):
        ports = FakePorts(
            body,
            content_type,
            max_depth=max_depth,
            body_later=body_later,
            build_fails=build_fails,
            profile_problems=profile_problems,
            publish_refusal=publish_refusal,
        )
        answer = await serve(consumer, ports)
        runs.append((_view(answer, ports), ports.calls))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("enabled", [True, False, None])
async def test_consumers_off_the_fast_path_answer_as_the_general_path(enabled: bool | None) -> None:
    """A disabled Event (409) and a Consumer without an Event (200, nothing emitted) take the general path."""
    consumer = _consumer(profile="cloudevents", violations=(), max_body_bytes=1024)
    assert consumer.event is not None
    event = None if enabled is None else dataclasses.replace(consumer.event, enabled=enabled)
    changed = dataclasses.replace(consumer, event=event)
    views = []
    for serve in (receive, _general):
        ports = FakePorts(
            b"{}",
            "application/json",
            max_depth=8,
            body_later=False,
            build_fails=False,
            profile_problems=(),
            publish_refusal=None,
        )
        views.append((_view(await serve(changed, ports), ports), ports.calls))
    assert views[0] == views[1]
