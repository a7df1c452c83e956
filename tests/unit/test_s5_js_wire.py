"""The JetStream bus's fast paths give the answers of the general ones (session 5, issue 15).

* ``encode_meta`` writes with orjson when the result is ASCII: the same text as ``json.dumps``;
* the attempt log's records are written with orjson: read back as the attempts they were made from;
* ``_delivery_counts`` reads the two numbers of a reply subject that nats-py's ``Msg.metadata`` reads;
* ``_raise_refusal`` reads a publish acknowledgement as nats-py's ``JetStreamContext.publish`` does.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.msg import Msg

from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.durable import (
    attempt_from_record,
    attempt_to_record,
    attempts_from_record,
    attempts_to_record,
    decode_meta,
    encode_meta,
)
from openconnector.delivery.jetstream import _delivery_counts, _raise_refusal
from openconnector.delivery.outcomes import BusUnavailableError
from openconnector.delivery.prepared import Prepared
from openconnector.delivery.target import ContentMode

texts = st.text(max_size=40)
modes = st.sampled_from([ContentMode.STRUCTURED, ContentMode.BINARY])


def _general_meta(prepared: Prepared) -> str:
    """encode_meta as it was before the fast path: the reference."""
    return json.dumps(
        {
            "id": prepared.id,
            "type": prepared.type,
            "source": prepared.source,
            "mode": prepared.content_mode.value,
            "headers": dict(prepared.headers),
        },
        separators=(",", ":"),
    )


@settings(max_examples=300, deadline=None)
@given(
    event_id=texts,
    event_type=texts,
    source=texts,
    mode=modes,
    headers=st.dictionaries(texts, texts, max_size=5),
)
def test_encode_meta_is_the_json_dumps_text_and_decodes_back(
    event_id: str, event_type: str, source: str, mode: ContentMode, headers: dict[str, str]
) -> None:
    prepared = Prepared(event_id, event_type, source, mode, headers, b"body", 4)
    meta = encode_meta(prepared)
    assert meta == _general_meta(prepared)
    assert meta.isascii()
    back = decode_meta(meta, b"body")
    assert (back.id, back.type, back.source, back.content_mode) == (event_id, event_type, source, mode)
    assert dict(back.headers) == headers


def test_encode_meta_escapes_del_as_json_dumps_does() -> None:
    """Found by the property above: orjson writes DEL (0x7f) raw, json.dumps as an escape."""
    prepared = Prepared("i", "t", "\x7f", ContentMode.BINARY, {"h": "a\x7fb"}, b"", 0)
    assert encode_meta(prepared) == _general_meta(prepared)
    assert "\x7f" not in encode_meta(prepared)
    assert decode_meta(encode_meta(prepared), b"").source == "\x7f"


def test_encode_meta_with_lone_surrogates_falls_back_to_json() -> None:
    prepared = Prepared("a\ud800", "t", "s", ContentMode.BINARY, {"h": "\udfff"}, b"", 0)
    assert encode_meta(prepared) == _general_meta(prepared)
    assert decode_meta(encode_meta(prepared), b"").id == "a\ud800"


attempts = st.builds(
    Attempt,
    request_id=texts,
    event_id=texts,
    attempt=st.integers(min_value=1, max_value=1000),
    time=st.floats(min_value=0, max_value=4e9),
    status_code=st.none() | st.integers(min_value=100, max_value=599),
    latency_ms=st.floats(min_value=0, max_value=1e6),
    error=st.none() | texts,
    outcome=st.sampled_from(["delivered", "retry", "dead_lettered", "dropped"]),
    destination=st.sampled_from(list(Destination)),
    retry_in=st.none() | st.floats(min_value=0, max_value=1e5),
)


def _fields(attempt: Attempt) -> tuple[object, ...]:
    return (
        attempt.request_id, attempt.event_id, attempt.attempt, attempt.time, attempt.status_code,
        attempt.latency_ms, attempt.error, attempt.outcome, attempt.destination, attempt.retry_in,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(attempts, min_size=1, max_size=5))
def test_attempt_records_read_back_as_the_attempts(batch: list[Attempt]) -> None:
    assert [_fields(a) for a in attempts_from_record(attempts_to_record(batch))] == [
        _fields(a) for a in batch
    ]
    single = attempt_from_record(attempt_to_record(batch[0]))
    assert single is not None
    assert _fields(single) == _fields(batch[0])


def test_an_attempt_with_a_lone_surrogate_in_its_error_is_still_written() -> None:
    attempt = Attempt("r", "e", 1, 1.0, None, 2.0, "bad \ud800", "retry")
    back = attempt_from_record(attempt_to_record(attempt))
    assert back is not None
    assert back.error == "bad \ud800"


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.OC.sub_ns_2fa.3.1042.17.1733480000000000000.250",
        "$JS.ACK.domain.acchash.OC.sub_ns_2fa.2.77.9.1733480000000000000.0.randomtoken",
        "$JS.ACK.domain.acchash.OC.sub_ns_2fa.1.5.5.1733480000000000000.12",
    ],
)
def test_delivery_counts_are_what_nats_py_reads(reply: str) -> None:
    metadata = Msg(_client=None, subject="s", reply=reply).metadata  # type: ignore[arg-type]
    assert _delivery_counts(reply) == (metadata.num_delivered, metadata.num_pending)


@pytest.mark.parametrize("reply", [None, "", "_INBOX.abc", "$JS.ACK.too.short", "$JS.ACK.a.b.x.1.2.3.4"])
def test_delivery_counts_of_something_else_are_none(reply: str | None) -> None:
    assert _delivery_counts(reply) is None


def test_a_publish_acknowledgement_is_read_like_nats_py() -> None:
    _raise_refusal(b'{"stream":"OC","seq":7}')
    _raise_refusal(b'{"stream":"OC","seq":7,"duplicate":true}')
    _raise_refusal(b'{"error":{"code":400,"err_code":10201,"description":"dup"}}', 10201)
    with pytest.raises(BusUnavailableError, match="refused to store the request: maximum bytes exceeded"):
        _raise_refusal(b'{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}')
    with pytest.raises(BusUnavailableError, match="refused to store the request"):
        _raise_refusal(b'{"error":{"code":400,"err_code":10201,"description":"dup"}}')
    with pytest.raises(BusUnavailableError, match="did not confirm"):
        _raise_refusal(b"not json")
