"""The message log's records reach the NATS connection before the deliveries of the requests that
recorded them, without a request waiting for that hand-over (session 7, issue 15):

* the bus writes the deliveries of the requests stored in one loop turn at its end, after calling the
  message log's hand-over; a request that timed out or was cancelled meanwhile is not written (its sender
  is refused: nothing may be stored), and a refusal of the connection reaches the request that made it;
* the log's hand-over as a plain call publishes exactly what its task did (same messages, same order,
  same held changes): every process ends with the same view (Hypothesis, the steps of test_s6_jslog_own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import nats.errors
import pytest
from hypothesis import given, settings
from nats.aio.msg import Msg
from tests.unit.test_s6_jslog_own import (
    _ACTIONS,
    KEYS,
    Steps,
    _act,
    _Client,
    _Process,
    _run_steps,
    _steps,
    _Stream,
    _view,
)

from openconnector.delivery.jetstream import JetStreamBus, JetStreamSettings, _CoalescingClient
from openconnector.delivery.target import ContentMode
from openconnector.messages.jetstream_log import JetStreamMessageLog, own_prefix
from openconnector.messages.store import MemoryMessageStore


def _encode(event: Any, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    raise AssertionError("not used")


class _Connection(_CoalescingClient):
    """Records what is written (nothing is connected); ``refuse`` makes publish_now raise."""

    def __init__(self, written: list[str]) -> None:
        super().__init__()
        self.written = written
        self.refuse: Exception | None = None

    def publish_now(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.written.append(subject)


def _bus(written: list[str]) -> tuple[JetStreamBus[Any], _Connection]:
    bus: JetStreamBus[Any] = JetStreamBus(_encode, JetStreamSettings())
    bus.before_publish(lambda: written.append("log"))
    return bus, _Connection(written)


def _answer(bus: JetStreamBus[Any], token: int) -> None:
    bus._acknowledge(Msg(_client=None, subject=f"{bus._ack_prefix}{token}", data=b"{}"))  # type: ignore[arg-type]


async def test_the_deliveries_of_one_turn_are_written_after_the_log_hand_over() -> None:
    written: list[str] = []
    bus, connection = _bus(written)
    first = asyncio.ensure_future(bus._request(connection, "OC.d.a", b"1", {}, 5.0))
    batch = [("OC.d.b1", b"2", {"Nats-Batch-Sequence": "1"})]
    second = asyncio.ensure_future(bus._request(connection, "OC.d.b2", b"3", {}, 5.0, batch))
    await asyncio.sleep(0)  # both requests reach the outbox in this turn ...
    assert written == []
    await asyncio.sleep(0)  # ... which is written at its end, after the log's hand-over, once
    assert written == ["log", "OC.d.a", "OC.d.b1", "OC.d.b2"]
    _answer(bus, 1)
    _answer(bus, 2)
    assert await first == b"{}"
    assert await second == b"{}"
    assert not bus._ack_waiters
    assert not bus._outbox


async def test_a_request_that_gave_up_before_the_end_of_the_turn_is_not_written() -> None:
    written: list[str] = []
    bus, connection = _bus(written)
    cancelled = asyncio.ensure_future(bus._request(connection, "OC.d.cancelled", b"", {}, 5.0))
    kept = asyncio.ensure_future(bus._request(connection, "OC.d.kept", b"", {}, 5.0))
    await asyncio.sleep(0)
    cancelled.cancel()  # (as the gateway's submit timeout cancels a request)
    await asyncio.sleep(0.01)
    assert written == ["log", "OC.d.kept"]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    _answer(bus, 2)
    assert await kept == b"{}"
    assert not bus._ack_waiters


async def test_a_refusal_of_the_connection_reaches_the_request_that_made_it() -> None:
    written: list[str] = []
    bus, connection = _bus(written)
    connection.refuse = nats.errors.ConnectionClosedError()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await bus._request(connection, "OC.d.a", b"", {}, 5.0)
    assert written == ["log"]
    assert not bus._ack_waiters


# ------------------------------------------------------------------------------ the log's hand-over


class _NowClient(_Client):
    """The stand-in connection of test_s6_jslog_own, with the bus connection's plain-call publish."""

    def publish_now(self, subject: str, data: bytes) -> None:
        if self._stream.refuse:
            raise OSError("refused")
        self._stream.messages.append((subject, data))


async def _play(steps: Steps, now: bool) -> tuple[_Stream, list[_Process]]:
    stream = _Stream()
    processes = [_Process(stream) for _ in range(3)]
    for number, process in enumerate(processes):
        if now:
            stand_in: Any = process.log._bus
            stand_in.nats_client = _NowClient(stream)
        process.log._origin = f"origin-{number}"  # the same in both plays: the same bytes
        process.log._own_prefix = own_prefix(process.log._origin)
    await _run_steps(processes, steps)
    return stream, processes


@settings(max_examples=80, deadline=None)
@given(_steps([*_ACTIONS, "mark", "ack"]))
async def test_the_hand_over_publishes_what_the_flush_task_published(steps: Steps) -> None:
    by_task, task_processes = await _play(steps, now=False)
    by_call, call_processes = await _play(steps, now=True)
    assert by_call.messages == by_task.messages
    for by_call_process, by_task_process in zip(call_processes, task_processes, strict=True):
        assert _view(by_call_process.log) == _view(by_task_process.log)
        assert not by_call_process.log._held


async def test_a_change_the_connection_refuses_is_not_held_and_waiters_are_woken() -> None:
    stream = _Stream()
    writer = _Process(stream)
    stand_in: Any = writer.log._bus
    stand_in.nats_client = _NowClient(stream)
    stream.refuse = True
    await _act(writer, KEYS[0], "record", 1, 0)
    assert writer.log._hand_over_now()
    assert not writer.log._held
    assert not stream.messages
    assert not writer.log._pending


async def test_a_started_log_leaves_the_hand_over_to_the_bus() -> None:
    """flush() returns at once: the bus calls the hand-over before it writes deliveries, and what was
    recorded is published then (or at the end of the loop turn, whichever comes first)."""
    stream = _Stream()
    hand_overs: list[Any] = []
    bus: Any = SimpleNamespace(
        settings=SimpleNamespace(stream="T"),
        nats_client=_NowClient(stream),
        before_disconnect=lambda publish_rest: None,
        before_publish=hand_overs.append,
        wait_ready=lambda deadline: asyncio.Event().wait(),
    )
    log = JetStreamMessageLog(bus, MemoryMessageStore())
    log.start()
    try:
        assert hand_overs == [log._hand_over_now]
        await _act(SimpleNamespace(log=log), KEYS[0], "record", 1, 0)  # type: ignore[arg-type]
        await log.flush()
        assert not stream.messages  # not yet: the bus hands it over before its deliveries
        hand_overs[0]()
        assert len(stream.messages) == 1
        await _act(SimpleNamespace(log=log), KEYS[1], "record", 2, 0)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # no delivery followed: the end of the turn publishes it
        assert len(stream.messages) == 2
    finally:
        await log.close()
