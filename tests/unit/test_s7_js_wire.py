"""The JetStream bus's session-7 fast paths give the general path's answers (issue 15).

* the NATS connection writes the header block (and the whole PUB/HPUB command) nats-py writes, with the
  same counters and the same refusals, without cleaning values that have nothing to clean;
* ``publish_now`` (acks, NAKs and stored deliveries without a chain of coroutines) queues the command
  ``publish`` queues and refuses what it refuses; an ack or NAK publishes what ``Msg.ack``/``Msg.nak``
  publish, once;
* ``decode_meta`` keeps the decoded headers as they are when they are what ``encode_meta`` writes, and
  looks a delivery mode up by its text: the general answer, refusals included;
* the headers of a delivered message, parsed without nats-py's coroutine, are what nats-py parses;
* a request the pacing pre-check lets through is one pacing would not have held;
* a request's ``Nats-Msg-Id`` is the digest of its parts hashed one update at a time (the rule of
  ``durable.request_msg_id``), computed in one call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Iterable
from typing import Any

import nats.errors
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from tests.support.keys import sub_key

from openconnector.delivery import jetstream
from openconnector.delivery.durable import decode_meta, encode_meta, request_msg_id
from openconnector.delivery.jetstream import _CoalescingClient
from openconnector.delivery.prepared import Prepared
from openconnector.delivery.target import DELIVERY_MODES, ContentMode, DeliveryTarget

texts = st.text(max_size=40)
modes = st.sampled_from([ContentMode.STRUCTURED, ContentMode.BINARY])

# Header names: tokens nats-py accepts, with and without surrounding blanks, empty ones, invalid ones.
_NAME_CHARS = "abcXYZ09-_.!#$%&'*+^`|~"
names = st.one_of(
    st.text(alphabet=_NAME_CHARS, min_size=1, max_size=12),
    st.text(alphabet=_NAME_CHARS + " \t", max_size=12),
    st.sampled_from(["Oc-Meta", "Nats-Msg-Id", "Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"]),
    st.text(max_size=6),
)
values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet='ab{}":,\r\n \t', max_size=30),
    st.just('{"id":"e-1","type":"t","source":"s","mode":"structured","headers":{"content-type":"x"}}'),
)
headers_or_none = st.one_of(st.none(), st.dictionaries(names, values, max_size=5))


class _Captured(_CoalescingClient):
    """Collects the commands instead of sending them (nothing is connected)."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[bytes] = []

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.commands.append(bytes(cmd))


async def _publish(
    general: bool, subject: str, reply: str, payload: bytes, headers: object
) -> tuple[object, ...]:
    client = _Captured()
    send = NatsClient._send_publish if general else _CoalescingClient._send_publish
    try:
        await send(client, subject, reply, payload, len(payload), headers)  # type: ignore[arg-type]
    except Exception as error:
        return ("raised", type(error), str(error), client.commands, dict(client.stats))
    return ("sent", client.commands, dict(client.stats))


@settings(max_examples=400, deadline=None)
@given(
    subject=st.sampled_from(["OC.d.ns.name", "$JS.ACK.OC.c.1.2.3.4.0", ""]),
    reply=st.sampled_from(["", "_OC_PUBACK.abc.7"]),
    payload=st.binary(max_size=40),
    headers=headers_or_none,
)
async def test_the_publish_command_is_nats_pys(
    subject: str, reply: str, payload: bytes, headers: dict[str, str] | None
) -> None:
    assert await _publish(False, subject, reply, payload, headers) == await _publish(
        True, subject, reply, payload, headers
    )


async def test_a_value_with_line_breaks_is_cleaned_as_nats_py_does() -> None:
    headers = {" Oc-Meta ": " a\r\nb\nc ", "": "dropped", "X": "\r"}
    ours = await _publish(False, "s", "", b"x", headers)
    assert ours == await _publish(True, "s", "", b"x", headers)
    assert ours[0] == "sent"
    commands = ours[1]
    assert isinstance(commands, list)
    assert b"Oc-Meta: a  b c\r\nX: \r\n\r\n" in commands[0]


async def test_an_invalid_header_name_is_refused_as_nats_py_refuses_it() -> None:
    ours = await _publish(False, "s", "", b"x", {"bad name": "v"})
    assert ours == await _publish(True, "s", "", b"x", {"bad name": "v"})
    assert ours[0] == "raised"
    assert "bad name" not in jetstream._CLEAN_HEADER_NAMES


def test_the_overridden_nats_py_internals_are_still_there() -> None:
    assert NatsClient()._max_pending_size == 0  # the tests' unconnected clients set what connect() sets
    for name in (
        "_send_publish",
        "_process_msg",
        "_process_headers",
        "_build_message",
        "_send_command",
        "_remove_sub",
    ):
        assert callable(getattr(NatsClient, name, None)), f"nats-py renamed {name}: revisit _CoalescingClient"


def _request_msg_id_by_updates(deliveries: Iterable[tuple[str, str, str, str]]) -> str:
    """request_msg_id as it was: one digest update per length and part (the reference)."""
    digest = hashlib.sha256()
    for part in sorted(set(deliveries)):
        for text in part:
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(4, "big"))
            digest.update(data)
    return "oc-" + digest.hexdigest()[:48]


parts = st.tuples(st.text(max_size=12), st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(deliveries=st.lists(parts, max_size=6))
def test_the_request_msg_id_is_the_digest_of_its_parts_one_at_a_time(
    deliveries: list[tuple[str, str, str, str]],
) -> None:
    assert request_msg_id(deliveries) == _request_msg_id_by_updates(deliveries)


@pytest.mark.parametrize("count", [1, 2, 50])
def test_the_request_msg_id_of_a_usual_request(count: int) -> None:
    deliveries = [("default", "https://src", f"e-{n}", f"default/sub-{n}") for n in range(count)]
    assert request_msg_id(deliveries) == _request_msg_id_by_updates(deliveries)


class _Recording:
    """A stand-in connection for nats-py's Msg: records what ack()/nak() publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        self.published.append((subject, payload))


_REPLY = "$JS.ACK.OC.sub_x.1.2.3.1767000000000000000.0"


@settings(max_examples=200, deadline=None)
@given(delay=st.one_of(st.just(0.0), st.just(0.001), st.floats(min_value=0.0, max_value=7 * 24 * 3600.0)))
async def test_the_nak_payload_is_what_msg_nak_publishes(delay: float) -> None:
    connection = _Recording()
    await Msg(_client=connection, reply=_REPLY).nak(delay=delay)  # type: ignore[arg-type]
    assert connection.published == [(_REPLY, jetstream._nak_payload(delay))]


async def test_the_ack_payload_is_what_msg_ack_publishes() -> None:
    connection = _Recording()
    await Msg(_client=connection, reply=_REPLY).ack()  # type: ignore[arg-type]
    assert connection.published == [(_REPLY, jetstream._ACK)]


def _unconnected(pending_size: int = 2 * 1024 * 1024) -> _CoalescingClient:
    """A client as between reconnects: commands are buffered (up to ``pending_size`` bytes), not sent."""
    client = _CoalescingClient()
    client._max_pending_size = pending_size
    return client


_PUBLISHES: list[tuple[str, bytes, str, dict[str, str] | None]] = [
    ("OC.d.ns.name", b"body", "_OC_PUBACK.abc.1", {"Oc-Meta": "{}", "Nats-Msg-Id": "oc-1"}),
    (_REPLY, b"", "", None),
    (_REPLY, b'-NAK {"delay": 1000000}', "", None),
    ("bad subject", b"x", "", None),
    ("OC.d.ns.name", b"x", "bad reply", None),
    ("", b"x", "", None),
    ("OC.d.x", b"x" * (1024 * 1024 + 1), "", None),
    ("OC.d.x", b"x", "", {"bad name": "v"}),
]


@pytest.mark.parametrize(("subject", "payload", "reply", "headers"), _PUBLISHES)
async def test_publish_now_queues_what_publish_queues_and_refuses_what_it_refuses(
    subject: str, payload: bytes, reply: str, headers: dict[str, str] | None
) -> None:
    outcomes: list[tuple[object, ...]] = []
    for now in (True, False):
        client = _unconnected()
        try:
            if now:
                assert client.publish_now(subject, payload, reply, headers) is None
            else:
                await client.publish(subject, payload, reply=reply, headers=headers)
        except Exception as error:
            outcomes.append(("raised", type(error), client._pending, dict(client.stats)))
        else:
            outcomes.append(("queued", client._pending, client._pending_data_size, dict(client.stats)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == (
        "queued" if subject.startswith(("OC.d.ns", "$JS")) and " " not in reply else "raised"
    )


async def test_publish_now_refuses_on_a_closed_connection_as_publish_does() -> None:
    closed = _unconnected()
    closed._status = NatsClient.CLOSED
    with pytest.raises(nats.errors.ConnectionClosedError):
        closed.publish_now("OC.d.x", b"x")
    with pytest.raises(nats.errors.ConnectionClosedError):
        await closed.publish("OC.d.x", b"x")


async def test_publish_now_refuses_when_the_buffer_between_reconnects_is_full_as_publish_does() -> None:
    for pending_size in (0, 10):
        with pytest.raises(nats.errors.OutboundBufferLimitError):
            _unconnected(pending_size).publish_now("OC.d.x", b"x" * 11)
        with pytest.raises(nats.errors.OutboundBufferLimitError):
            await _unconnected(pending_size).publish("OC.d.x", b"x" * 11)


async def test_settling_marks_the_message_answered_and_a_second_answer_is_not_sent() -> None:
    client = _unconnected()
    message = Msg(_client=client, reply=_REPLY)
    assert jetstream._settle_now(message, jetstream._ACK) is None
    assert message._ackd
    assert client._pending == [f"PUB {_REPLY}  0\r\n\r\n".encode()]
    assert jetstream._settle_now(message, jetstream._nak_payload(1.0)) is None  # logged, not raised
    assert len(client._pending) == 1
    assert jetstream._settle_now(Msg(_client=client, reply=""), jetstream._ACK) is None  # not a JS message
    assert len(client._pending) == 1


def _decode_meta_general(meta: str, body: bytes) -> Prepared:
    """decode_meta as it was before its fast path: the reference."""
    try:
        try:
            document = orjson.loads(meta)
        except orjson.JSONDecodeError:
            document = json.loads(meta)
        headers = {str(k): str(v) for k, v in dict(document["headers"]).items()}
        event_id, event_type, source = str(document["id"]), str(document["type"]), str(document["source"])
        mode = ContentMode(document["mode"])
        if mode not in DELIVERY_MODES:
            raise ValueError(f"no delivery is sent in {mode} mode")
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a delivery message: {type(error).__name__}") from None
    return Prepared(
        id=event_id, type=event_type, source=source, content_mode=mode, headers=headers, body=body,
        size=len(body),
    )  # fmt: skip


def _decoded(meta: str) -> object:
    try:
        return decode_meta(meta, b"body")
    except ValueError as error:
        return ("refused", str(error))


def _decoded_general(meta: str) -> object:
    try:
        return _decode_meta_general(meta, b"body")
    except ValueError as error:
        return ("refused", str(error))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
meta_documents = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=10), json_values),
        "type": st.text(max_size=10),
        "source": st.one_of(st.text(max_size=10), st.integers()),
        "mode": st.one_of(st.sampled_from([m.value for m in ContentMode]), json_values),
        "headers": st.one_of(
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
            st.dictionaries(st.text(max_size=8), json_values, max_size=3),
            st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=2),
            json_values,
        ),
    },
)


@settings(max_examples=500, deadline=None)
@given(document=st.one_of(meta_documents, json_values))
def test_decode_meta_gives_the_general_answer(document: object) -> None:
    meta = json.dumps(document)
    assert _decoded(meta) == _decoded_general(meta)


@settings(max_examples=200, deadline=None)
@given(event_id=texts, source=texts, mode=modes, headers=st.dictionaries(texts, texts, max_size=4))
def test_decode_meta_of_what_encode_meta_wrote_gives_the_general_answer(
    event_id: str, source: str, mode: ContentMode, headers: dict[str, str]
) -> None:
    prepared = Prepared(
        id=event_id, type="t", source=source, content_mode=mode, headers=headers, body=b"b", size=1
    )
    meta = encode_meta(prepared)
    assert decode_meta(meta, b"b") == _decode_meta_general(meta, b"b") == prepared


def _no_encoding(event: Any, mode: ContentMode) -> tuple[dict[str, str], bytes]:
    raise AssertionError("not used")


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(0, 4),
    wait=st.sampled_from([0.0, 1.0]),
    states=st.lists(st.tuples(st.integers(0, 6), st.booleans(), st.booleans()), min_size=1, max_size=3),
    plan_picks=st.lists(st.integers(0, 3), min_size=1, max_size=4),
)
async def test_a_request_the_pace_check_lets_through_would_not_have_waited(
    limit: int, wait: float, states: list[tuple[int, bool, bool]], plan_picks: list[int]
) -> None:
    """_may_pace False: _pace (the general path) finishes without waiting (its coroutine ends at once)."""
    bus: jetstream.JetStreamBus[Any] = jetstream.JetStreamBus(
        _no_encoding, jetstream.JetStreamSettings(pace_backlog=limit, pace_wait=wait)
    )
    loop = asyncio.get_running_loop()
    keys = [sub_key(f"ns/s{n}") for n in range(4)]  # the last is not installed
    for key, (backlog, waiting, delivering) in zip(keys, states, strict=False):
        sub = jetstream._Subscription(
            DeliveryTarget(key, "http://127.0.0.1:9/"), time.time, 0.0, lambda k, a: None
        )
        sub.backlog = backlog
        sub.finished_at = loop.time() if delivering else -math.inf
        if waiting:
            sub.pace_waiters.append(loop.create_future())
        bus._subs[key] = sub
    plan = [(keys[pick], object()) for pick in plan_picks]
    if bus._may_pace(plan):
        return
    reserved: list[tuple[jetstream._Subscription, int]] = []
    pace = bus._pace(plan, reserved)
    with pytest.raises(StopIteration):
        pace.send(None)
    assert reserved == []


_HEADER_BYTES = st.sampled_from(
    [
        b"a",
        b"Z",
        b"-",
        b":",
        b": ",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\r\n",
        b"\x1c",
        b"\x0b",
        b"\xc3\xa9",
        b"\xff",
        b"0",
    ]
)
header_lines = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([b"Oc-Meta", b"Nats-Msg-Id", b"X"]), st.binary(max_size=12)).map(
            lambda pair: pair[0] + b": " + pair[1]
        ),
        st.lists(_HEADER_BYTES, max_size=8).map(b"".join),
    ),
    max_size=4,
)
header_blocks = st.one_of(
    st.binary(max_size=14),
    header_lines.map(lambda lines: b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"),
    st.tuples(st.sampled_from([b"NATS/1.0", b"NATS/1.0 503", b"NATS/1.0 100 Idle Heartbeat", b"XXXX/9.9"]),
              header_lines).map(lambda parts: parts[0] + b"\r\n" + b"\r\n".join(parts[1]) + b"\r\n\r\n"),
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(block=header_blocks)
async def test_the_headers_of_a_delivered_message_are_what_nats_py_parses(block: bytes) -> None:
    client = _unconnected()
    try:
        general: object = await client._process_headers(block)
    except Exception as error:
        general = ("raised", type(error))
    plain = jetstream._plain_headers(block)
    if isinstance(plain, jetstream._NotPlain):
        return  # left to nats-py (an inline status, or too short to tell)
    assert plain == general


async def test_a_stored_delivery_s_headers_take_the_plain_way() -> None:
    meta = '{"id":"e-1","type":"t","source":"s","mode":"binary","headers":{"ce-id":"e-1"}}'
    block = f"NATS/1.0\r\nOc-Meta: {meta}\r\nNats-Msg-Id: oc-1\r\n\r\n".encode()
    assert jetstream._plain_headers(block) == {"Oc-Meta": meta, "Nats-Msg-Id": "oc-1"}
    assert isinstance(jetstream._plain_headers(b"NATS/1.0 503\r\n\r\n"), jetstream._NotPlain)
