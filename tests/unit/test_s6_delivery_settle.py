"""Session 6 shortcuts of the delivery hot path (issue 15) give the general path's answer: the inlined
success settle (:meth:`Deliverer.delivered`) records the same attempt, health and observer calls as
``record_success`` + :meth:`~Deliverer.record_attempt` + :meth:`~Deliverer.report_outcome`, and a target's
``_plain`` flag (the worker sends the encoded request as it is) holds exactly when the general
:meth:`~Deliverer.subscriber_request` would return the encoded headers and body unchanged."""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.keys import sub_key

from openconnector.api.keys import ResourceKey
from openconnector.delivery import ContentMode, DeliveryTarget, Outcome
from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.health import SubscriptionHealth
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.delivery.prepared import Prepared
from openconnector.delivery.retry import Deliverer
from openconnector.delivery.sending import HttpSender, Response

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
KEY = sub_key("ns/a")
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


class Recorder:
    """An observer that keeps every call; optionally failing in ``on_attempt``."""

    def __init__(self, fail_attempt: bool = False) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail_attempt = fail_attempt

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        self.calls.append(("attempt", target_key, attempt))
        if self.fail_attempt:
            raise RuntimeError("observer broke")

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        self.calls.append(("outcome", target_key, event_id, outcome, reason))


@dataclass
class State:
    target: DeliveryTarget
    health: SubscriptionHealth = field(default_factory=lambda: SubscriptionHealth(clock=lambda: 1000.0))
    attempts: AttemptLog = field(default_factory=AttemptLog)

    @property
    def key(self) -> ResourceKey:
        return self.target.key


def _deliverer(observer: Recorder) -> Deliverer:
    async def sleep(_: float) -> None:
        return None

    return Deliverer(
        HttpSender(), lambda p, m, e: ({}, b""), observer, on_paused=None, clock=lambda: 1000.0,
        sleep=sleep, rng=random.Random(0),
    )  # fmt: skip


def _prepared(event_id: str) -> Prepared:
    return Prepared(event_id, "t", "urn:s", ContentMode.STRUCTURED, {"Content-Type": "a/b"}, b"{}", 600)


def _without_request_id(attempt: Attempt) -> tuple[object, ...]:
    return (
        attempt.event_id, attempt.attempt, attempt.time, attempt.status_code, attempt.latency_ms,
        attempt.error, attempt.outcome, attempt.destination, attempt.retry_in, attempt.response_headers,
        attempt.body_excerpt,
    )  # fmt: skip


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(1, 5),  # attempt number
            st.integers(200, 299),
            st.floats(0, 1e5, allow_nan=False),  # latency ms
            st.floats(0, 2e9, allow_nan=False),  # started
            st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=3))),
            st.binary(max_size=4),
        ),
        min_size=1,
        max_size=60,
    ),
    st.booleans(),
)
def test_the_inlined_success_settle_records_what_the_general_calls_record(
    successes: list[tuple[int, int, float, float, dict[str, str] | None, bytes]], fail_attempt: bool
) -> None:
    target = DeliveryTarget(key=KEY, url="http://127.0.0.1:9/")
    fast, general = State(target), State(target)
    fast_observer, general_observer = Recorder(fail_attempt), Recorder(fail_attempt)
    fast_deliverer, general_deliverer = _deliverer(fast_observer), _deliverer(general_observer)
    for n, (number, status, latency, started, headers, prefix) in enumerate(successes):
        prepared = _prepared(f"e-{n}")
        response = Response(status, None, started, latency, None, prefix, False, headers)
        fast_deliverer.delivered(fast, prepared, number, response)
        general.health.record_success(status, latency, retry=number > 1)
        general_deliverer.record_attempt(
            general, prepared, number, response, Outcome.SUCCESS, Destination.SUBSCRIBER
        )
        general_deliverer.report_outcome(general.key, prepared.id, FinalOutcome.DELIVERED, None)
    assert fast.health.snapshot() == general.health.snapshot()
    assert fast.health.condition == general.health.condition
    assert fast.attempts.total == general.attempts.total
    assert [_without_request_id(a) for a in fast.attempts] == [
        _without_request_id(a) for a in general.attempts
    ]
    assert [a.to_json() | {"requestId": ""} for a in fast.attempts] == [
        a.to_json() | {"requestId": ""} for a in general.attempts
    ]
    # Request ids: one process prefix, counting up, 32 hex digits, as new_request_id() makes them.
    ids = [a.request_id for a in fast.attempts] + [a.request_id for a in general.attempts]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:16] for i in ids}) == 1
    assert len(set(ids)) == len(ids)

    def shape(calls: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return [c if c[0] == "outcome" else (c[0], c[1], _without_request_id(c[2])) for c in calls]  # type: ignore[arg-type]

    assert shape(fast_observer.calls) == shape(general_observer.calls)
    # The observer saw the very entries the attempt log holds.
    assert [c[2] for c in fast_observer.calls if c[0] == "attempt"] == list(fast.attempts)


HEADER_NAMES = st.sampled_from(["X-A", "X-Tenant", "Authorization", "X-Api-Key"])


@PROPERTY_SETTINGS
@given(
    st.dictionaries(HEADER_NAMES.filter(lambda n: n != "Authorization"), st.text("abc", max_size=3)),
    st.dictionaries(HEADER_NAMES, st.text("abc", max_size=3)),
    st.booleans(),
    st.sampled_from([ContentMode.STRUCTURED, ContentMode.BINARY]),
)
def test_a_plain_target_is_exactly_one_whose_attempts_send_the_encoded_request_unchanged(
    headers: dict[str, str], auth_headers: dict[str, str], signed: bool, mode: ContentMode
) -> None:
    target = DeliveryTarget(
        key=KEY,
        url="http://127.0.0.1:9/",
        content_mode=mode,
        headers=headers,
        auth_headers=auth_headers,
        signing_secret=SECRET if signed else None,
    )
    assert target._plain == (not headers and not auth_headers and not signed)
    prepared = Prepared("e-1", "t", "urn:s", mode, {"Content-Type": "a/b"}, b"{}", 600)
    converted: dict[ContentMode, tuple[Mapping[str, str], bytes]] = {}
    request = _deliverer(Recorder()).subscriber_request(target, prepared, converted)
    assert not isinstance(request, Response)
    unchanged = request[0] is prepared.headers and request[1] is prepared.body
    assert unchanged == target._plain
    if not target._plain:  # the general merge: plain headers, the encoding's, then the credentials
        assert {k: v for k, v in request[0].items() if not k.startswith("webhook-")} == {
            **headers,
            **prepared.headers,
            **auth_headers,
        }
