"""The JetStream bus's session-7 fast paths give the general path's answers (issue 15).

* the NATS connection writes the header block (and the whole PUB/HPUB command) nats-py writes, with the
  same counters and the same refusals, without cleaning values that have nothing to clean;
* a request's ``Nats-Msg-Id`` is the digest of its parts hashed one update at a time (the rule of
  ``durable.request_msg_id``), computed in one call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from openconnector.delivery import jetstream
from openconnector.delivery.durable import request_msg_id
from openconnector.delivery.jetstream import _CoalescingClient

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
