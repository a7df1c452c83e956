"""The JetStream bus reads its publish acknowledgements on one subscription of its own (a counter under
a random prefix, one timer for all of them) instead of nats-py's ``request``: it answers what ``request``
answered, a PubAck's data, a timeout, or no responders, and keeps nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import nats.errors
import pytest
from nats.aio.msg import Msg

from openconnector.delivery.jetstream import JetStreamBus, JetStreamSettings
from openconnector.delivery.target import ContentMode


def _encode(event: Any, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    raise AssertionError("not used")


class _Client:
    """Answers each publish on its reply subject, as JetStream does, with ``answer`` (None: never)."""

    def __init__(self, bus: JetStreamBus[Any], answer: Msg | None) -> None:
        self._bus = bus
        self._answer = answer
        self.replies: list[str] = []

    async def publish(self, subject: str, body: bytes, *, reply: str, headers: dict[str, str]) -> None:
        self.replies.append(reply)
        if self._answer is not None:
            answer = Msg(_client=None, subject=reply, data=self._answer.data, headers=self._answer.headers)  # type: ignore[arg-type]
            asyncio.get_running_loop().call_soon(asyncio.ensure_future, self._bus._acknowledged(answer))


def _bus() -> JetStreamBus[Any]:
    return JetStreamBus(_encode, JetStreamSettings())


async def test_the_answer_on_the_reply_subject_is_returned() -> None:
    bus = _bus()
    client = _Client(bus, Msg(_client=None, data=b'{"stream":"OC","seq":7}'))  # type: ignore[arg-type]
    assert await bus._request(client, "OC.d.x", b"body", {}, 1.0) == b'{"stream":"OC","seq":7}'  # type: ignore[arg-type]
    assert await bus._request(client, "OC.d.x", b"body", {}, 1.0) == b'{"stream":"OC","seq":7}'  # type: ignore[arg-type]
    first, second = client.replies
    assert first != second
    assert first.startswith("_OC_PUBACK.")
    assert not bus._ack_waiters
    assert bus._ack_prefix != _bus()._ack_prefix  # another bus (process) has other reply subjects


async def test_no_answer_is_a_timeout_and_nothing_waits_for_it_any_more() -> None:
    bus = _bus()
    client = _Client(bus, None)
    with pytest.raises(TimeoutError):
        await bus._request(client, "OC.d.x", b"body", {}, 0.05)  # type: ignore[arg-type]
    assert not bus._ack_waiters
    late = Msg(_client=None, subject=client.replies[0], data=b"{}")  # type: ignore[arg-type]
    await bus._acknowledged(late)  # an answer after the timeout is ignored
    assert not bus._ack_waiters


async def test_no_responders_is_raised_as_nats_py_raised_it() -> None:
    bus = _bus()
    status = Msg(_client=None, data=b"", headers={"Status": "503"})  # type: ignore[arg-type]
    with pytest.raises(nats.errors.NoRespondersError):
        await bus._request(_Client(bus, status), "OC.d.x", b"body", {}, 1.0)  # type: ignore[arg-type]
    assert not bus._ack_waiters


async def test_a_cancelled_request_leaves_nothing_behind() -> None:
    bus = _bus()
    request = asyncio.ensure_future(bus._request(_Client(bus, None), "OC.d.x", b"", {}, 10.0))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert len(bus._ack_waiters) == 1
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert not bus._ack_waiters
