"""Shortcuts of the delivery hot path (issue 15) give the general path's answer: the inline success
test equals ``Response.outcome is Outcome.SUCCESS``, a request id formatted in one operation equals the
documented prefix-and-counter form, and a single-delivery offer answers what the general offer answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.keys import sub_key

from openconnector.delivery import ContentMode, DeliveryTarget, Dispatcher, Outcome
from openconnector.delivery.retry import new_request_id
from openconnector.delivery.sending import Response

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


@PROPERTY_SETTINGS
@given(
    st.one_of(st.none(), st.integers(0, 1000)),
    st.one_of(st.none(), st.text(max_size=5)),
    st.booleans(),
)
def test_the_inline_success_test_is_outcome_success(
    status: int | None, error: str | None, fatal: bool
) -> None:
    response = Response(status, error, 0.0, 0.0, fatal=fatal)
    inline = status is not None and 200 <= status <= 299 and not response.fatal
    assert inline == (response.outcome is Outcome.SUCCESS)


@PROPERTY_SETTINGS
@given(st.binary(min_size=8, max_size=8), st.integers(0, 2**64 - 1))
def test_one_formatting_operation_gives_the_prefix_and_counter_form(prefix: bytes, number: int) -> None:
    hex_prefix = prefix.hex()
    assert "%032x" % ((int(hex_prefix, 16) << 64) | number) == f"{hex_prefix}{number:016x}"


def test_request_ids_count_up_behind_one_prefix() -> None:
    first, second = new_request_id(), new_request_id()
    assert first[:16] == second[:16]
    assert int(second[16:], 16) == int(first[16:], 16) + 1


@dataclass(frozen=True)
class Event:
    id: str
    type: str = "nl.test.created"
    source: str = "urn:test"
    data: int = 0


def encode(event: Event, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return {"Content-Type": "application/json"}, event.id.encode() + b"x" * event.data


@PROPERTY_SETTINGS
@given(st.integers(1, 4), st.integers(0, 6), st.integers(1, 3), st.integers(1, 3))
def test_a_single_delivery_offer_answers_what_the_general_offer_answers(
    queue_size: int, offers: int, kib: int, budget_kib: int
) -> None:
    """The same offers, once through ``offer`` (its one-delivery path) and once through the general
    path (:meth:`_count_refusal`, :meth:`_encode`, :meth:`_admit`), answer alike and hold alike, by
    count, lane bytes and budget. No loop runs: nothing is sent."""
    answers = []
    for general in (False, True):
        engine: Dispatcher[Event] = Dispatcher(encode, max_queued_bytes=budget_kib * 1024 + 600)
        key = sub_key("ns/a")
        engine.set_target(
            DeliveryTarget(key=key, url="http://127.0.0.1:9/", queue_size=queue_size, queue_bytes=kib * 1024)
        )
        engine._ensure_workers = lambda lane, runtime: None  # type: ignore[method-assign]  # no loop here
        lane = engine._lanes[key]
        results = []
        for n in range(offers):
            event = Event(f"e-{n}", data=600 * n)
            if general:
                wanted = [(lane, event)]
                result = engine._count_refusal(wanted, []) or engine._admit(engine._encode(wanted, {}), [])
            else:
                result = engine.offer([(key, event)])
            results.append(
                (
                    result.accepted,
                    result.queued,
                    result.skipped,
                    result.dropped,
                    result.full,
                    result.too_large,
                    result.budget_needed,
                    result.detail,
                )
            )
        answers.append((results, engine.queued_bytes(), engine.queued_bytes(key), engine.queue_depth(key)))
    assert answers[0] == answers[1]
