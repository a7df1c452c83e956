"""The message store's bounds and cursors, the recorder's redaction, and the authorizers' decisions."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pytest
from tests.support.keys import sub_key

from openconnector.ce import CloudEvent
from openconnector.delivery.attempts import Destination
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.messages.access import KubernetesAuthorizer, TokenAuthorizer
from openconnector.messages.model import MessageRecord, MessageStatus, decode_cursor, encode_cursor
from openconnector.messages.recorder import REDACTED, redacted_request_headers
from openconnector.messages.store import MemoryMessageStore
from openconnector.refusal import Refusal

KEY = sub_key("ns/sub")
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def record(n: int) -> MessageRecord:
    return MessageRecord(
        id=f"msg_{n}", namespace="ns", subscription="sub", event_id=f"e-{n}", source="s", type="t",
        subject=None, time=NOW, status=MessageStatus.PENDING, received=NOW,
    )  # fmt: skip


def test_count_bound_evicts_the_oldest_first() -> None:
    store = MemoryMessageStore(max_messages=3)
    for n in range(5):
        store.add(KEY, record(n), None)
    assert [s.record.id for s in store.newest_first(KEY, None)] == ["msg_4", "msg_3", "msg_2"]
    assert store.find_event(KEY, "e-0") is None
    assert store.count(KEY) == 3


def test_age_bound_evicts_what_is_too_old() -> None:
    clock = Clock()
    store = MemoryMessageStore(max_age=60.0, clock=clock)
    store.add(KEY, record(1), None)
    clock.now += 61
    store.add(KEY, record(2), None)
    assert [s.record.id for s in store.newest_first(KEY, None)] == ["msg_2"]


def test_cursor_continues_after_the_last_item_even_after_evictions() -> None:
    store = MemoryMessageStore(max_messages=1000)
    for n in range(600):
        store.add(KEY, record(n), None)
    page = [s.record.sequence for s in store.newest_first(KEY, 300)][:2]
    assert page == [299, 298]
    store.max_messages = 100
    store.add(KEY, record(600), None)  # evicts down to 100
    assert list(store.newest_first(KEY, 300)) == []


def test_cursors_are_opaque_and_checked() -> None:
    assert decode_cursor(encode_cursor("list", 42), "list") == 42
    for bad in ("bogus", encode_cursor("pull", 1), "x" * 500):
        with pytest.raises(Refusal) as refused:
            decode_cursor(bad, "list")
        assert refused.value.status == 400


def test_pull_acknowledges_up_to_the_cursor() -> None:
    store = MemoryMessageStore()
    for n in range(3):
        store.add(KEY, record(n), None)
    sequences = [s.record.sequence for s in store.oldest_first(KEY, 0)]
    assert store.acknowledge(KEY, sequences[1], NOW) == 2
    assert [s.record.status for s in store.oldest_first(KEY, 0)] == [
        MessageStatus.DELIVERED, MessageStatus.DELIVERED, MessageStatus.PENDING,
    ]  # fmt: skip
    assert store.pull_position(KEY) == sequences[1]


def test_request_headers_hide_credentials_signatures_and_dead_letter_secrets() -> None:
    target = DeliveryTarget(
        key=KEY,
        url="http://127.0.0.1:1/x",
        content_mode=ContentMode.BINARY,
        headers={"X-Plain": "p"},
        auth_headers={"Authorization": "Bearer secret", "X-Api-Key": "k"},
        signing_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        dead_letter_headers={"Authorization": "Bearer dl"},
    )
    event = CloudEvent({"specversion": "1.0", "id": "1", "source": "s", "type": "t"}, {"a": 1})
    headers = redacted_request_headers(target, event, Destination.SUBSCRIBER, "msg_x")
    assert headers["Authorization"] == REDACTED
    assert headers["X-Api-Key"] == REDACTED
    assert headers["webhook-signature"] == REDACTED
    assert headers["webhook-id"] == "msg_x"
    assert headers["ce-id"] == "1"
    assert headers["X-Plain"] == "p"
    dead = redacted_request_headers(target, event, Destination.DEAD_LETTER, "msg_x")
    assert dead == {"Content-Type": "application/cloudevents+json; charset=utf-8", "Authorization": REDACTED}
    assert "secret" not in repr(headers) + repr(dead)


async def test_token_authorizer() -> None:
    authorizer = TokenAuthorizer("t0ken")
    principal = await authorizer.authorize({"Authorization": "Bearer t0ken"}, "update", "a", "b")
    assert principal.name == "api-token"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dDBrZW4="}):
        with pytest.raises(Refusal) as refused:
            await authorizer.authorize(headers, "get", "a", "b", peer="127.0.0.1")
        assert refused.value.status == 401
        assert refused.value.headers == {"WWW-Authenticate": 'Bearer realm="openconnector"'}
    open_authorizer = TokenAuthorizer(None)
    assert (await open_authorizer.authorize({}, "update", "a", "b", peer="::1")).name == "loopback"
    with pytest.raises(Refusal) as refused:
        await open_authorizer.authorize({}, "get", "a", "b", peer="10.0.0.1")
    assert refused.value.status == 401


class FakeApiserver:
    """TokenReview and SubjectAccessReview answers: token -> user, (user, verb, ns) -> allowed."""

    def __init__(self, users: Mapping[str, str], grants: set[tuple[str, str, str]]) -> None:
        self.users = users
        self.grants = grants
        self.calls: list[str] = []

    async def __call__(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        self.calls.append(path.rsplit("/", 1)[-1])
        spec = body["spec"]
        if path.endswith("tokenreviews"):
            user = self.users.get(spec["token"])
            status = {"authenticated": True, "user": {"username": user}} if user else {"authenticated": False}
            return 201, {"status": status}
        attributes = spec["resourceAttributes"]
        assert attributes["group"] == "openconnector.nl"
        assert attributes["resource"] == "eventsubscriptions"
        allowed = (spec["user"], attributes["verb"], attributes["namespace"]) in self.grants
        return 201, {"status": {"allowed": allowed}}


async def test_kubernetes_authorizer_get_reads_update_acts_and_others_see_nothing() -> None:
    api = FakeApiserver({"tok-reader": "reader"}, {("reader", "get", "a")})
    authorizer = KubernetesAuthorizer(api)
    reader = {"Authorization": "Bearer tok-reader"}
    assert (await authorizer.authorize(reader, "get", "a", "sub")).name == "reader"
    with pytest.raises(Refusal) as refused:
        await authorizer.authorize(reader, "update", "a", "sub")
    assert refused.value.status == 403
    with pytest.raises(Refusal) as refused:
        await authorizer.authorize(reader, "get", "b", "sub")
    assert refused.value.status == 404  # another namespace: not even its existence is told
    with pytest.raises(Refusal) as refused:
        await authorizer.authorize({"Authorization": "Bearer stolen"}, "get", "a", "sub")
    assert refused.value.status == 401
    calls = len(api.calls)
    await authorizer.authorize(reader, "get", "a", "sub")
    assert len(api.calls) == calls  # cached


async def test_kubernetes_authorizer_unreachable_apiserver_is_503() -> None:
    async def failing(path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        raise OSError("down")

    with pytest.raises(Refusal) as refused:
        await KubernetesAuthorizer(failing).authorize({"Authorization": "Bearer x"}, "get", "a", "b")
    assert refused.value.status == 503
