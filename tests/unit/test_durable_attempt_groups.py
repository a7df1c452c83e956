"""The attempt-log stream holds the attempts of one subscription that were recorded together in one
message; a reader takes both that and the one-attempt messages of older gateways."""

from __future__ import annotations

import dataclasses

from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.durable import attempt_to_record, attempts_from_record, attempts_to_record

FIRST = Attempt(
    request_id="r1",
    event_id="e1",
    attempt=1,
    time=1_800_000_000.5,
    status_code=503,
    latency_ms=12.5,
    error=None,
    outcome="retryable",
    destination=Destination.SUBSCRIBER,
    retry_in=0.4,
)
SECOND = dataclasses.replace(
    FIRST, request_id="r2", attempt=2, status_code=200, outcome="success", retry_in=None
)


def test_several_attempts_share_one_message_in_order() -> None:
    assert attempts_from_record(attempts_to_record([FIRST, SECOND])) == [FIRST, SECOND]


def test_one_attempt_is_written_as_older_gateways_wrote_it() -> None:
    assert attempts_to_record([FIRST]) == attempt_to_record(FIRST)
    assert attempts_from_record(attempt_to_record(FIRST)) == [FIRST]


def test_what_is_not_an_attempt_is_left_out() -> None:
    assert attempts_from_record(b"\xff") == []
    assert attempts_from_record(b"{}") == []
    assert attempts_from_record(b'[{"r": "x"}, ' + attempt_to_record(SECOND) + b"]") == [SECOND]
