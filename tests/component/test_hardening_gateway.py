"""Issue 17 (hardening) on a real gateway over loopback: no request stalls it, every refusal is
problem+json, nothing accepted is dropped for encoding, slow and idle clients are cut off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import yaml

from openconnector.gateway.limits import RequestLimits
from openconnector.gateway.problems import PROBLEM_CONTENT_TYPE
from openconnector.standalone import StandaloneGateway
from tests.component.client import assert_problem, call, post
from tests.component.conftest import StartGateway
from tests.component.sinks import Sink

API = "openconnector.nl/v1alpha1"
LAX_TYPE = "nl.example.lax"
JWT_SECRET = "jwt-shared-secret-" + "x" * 46
ISSUER = "jwt"  # the Consumer's name
CE_JSON = {"Content-Type": "application/cloudevents+json"}
HEAVY_TEMPLATE = "{% for i in range(99000) %}{{ i + 1 }}{% endfor %}"


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def hardening_manifests(directory: Path, sink: Sink) -> Path:
    """A lax Event delivered to the sink, a Source at the sink, and Consumers: open, heavy, jwt."""
    docs = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "credentials"},
         "stringData": {"jwt": JWT_SECRET}},
        resource("Event", "lax", {"name": "Lax", "type": LAX_TYPE, "source": "/s", "profile": "cloudevents"}),
        resource(
            "EventSubscription",
            "to-sink",
            {"eventType": LAX_TYPE, "endpoint": sink.url_for("/events"), "contentMode": "structured"},
        ),
        resource("Source", "api", {"location": sink.url_for("/api")}),
        resource("Mapping", "heavy", {"mapping": {"v": HEAVY_TEMPLATE}}),
        resource("Consumer", "open", {"endpoint": "open", "targetType": "source", "targetId": "api"}),
        resource(
            "Consumer",
            "heavy",
            {"endpoint": "heavy", "targetType": "source", "targetId": "api", "mappingId": "heavy"},
        ),
        resource(
            "Consumer",
            "jwt",
            {
                "endpoint": "jwt",
                "targetType": "source",
                "targetId": "api",
                "auth": {
                    "type": "jwt",
                    "secretRefs": [{"name": "credentials", "key": "jwt"}],
                    "algorithms": ["HS256"],
                },
            },
        ),
    ]  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


def nested_json(depth: int) -> bytes:
    """``{"a":{"a":…1…}}`` as text: orjson cannot write more than 255 levels."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def event(data: Any = None, **attributes: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "/s", "type": LAX_TYPE, "data": data, **attributes}


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as started:
        yield started


@pytest.fixture
async def gw(tmp_path: Path, start_gateway: StartGateway, sink: Sink) -> StandaloneGateway:
    return await start_gateway(hardening_manifests(tmp_path / "m", sink))


async def raw_exchange(port: int, request: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh loopback connection; return everything the gateway answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()


def problem_from_raw(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith(PROBLEM_CONTENT_TYPE), answer
    problem: dict[str, Any] = orjson.loads(body)
    assert problem["status"] == status
    return status, problem


# ------------------------------------------------------------------ 1. media types, 3. error lists


@pytest.mark.timeout(60)
async def test_hostile_content_type_is_refused_at_once(gw: StandaloneGateway) -> None:
    hostile = "a/b" + ";   " * 2000 + "@"  # 8 KB: under aiohttp's header limit
    headers = {"Content-Type": hostile, "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}
    answer = await post(f"{gw.url}/events", b"x", {**headers, "ce-type": LAX_TYPE})
    body = assert_problem(answer, 400, "invalid-cloudevent")
    assert body["errors"][0]["attribute"] == "content-type"


@pytest.mark.timeout(60)
async def test_a_mebibyte_of_empty_objects_gets_a_small_answer(gw: StandaloneGateway) -> None:
    batch = b"[" + b",".join([b"{}"] * 340_000) + b"]"  # just under the 1 MiB limit
    headers = {"Content-Type": "application/cloudevents-batch+json"}
    answer = await post(f"{gw.url}/events", batch, headers)
    body = assert_problem(answer, 400, "invalid-cloudevent")
    assert len(answer.body) < 64 * 1024  # was 134 MB
    assert "checking stopped" in body["detail"]


async def test_a_batch_stopped_at_the_problem_cap_says_so_and_a_shorter_one_does_not(
    gw: StandaloneGateway,
) -> None:
    headers = {"Content-Type": "application/cloudevents-batch+json"}
    unknown = [event(None, id=f"u-{i}", type="nl.example.undefined") for i in range(150)]
    answer = await post(f"{gw.url}/events", orjson.dumps(unknown), headers)
    body = assert_problem(answer, 422, "event-not-acceptable")
    assert len(body["errors"]) == 100
    assert body["detail"] == "100 problem(s); nothing was accepted; checking stopped after 100 problems"
    few = await post(f"{gw.url}/events", orjson.dumps(unknown[:3]), headers)
    assert assert_problem(few, 422, "event-not-acceptable")["detail"] == "3 problem(s); nothing was accepted"


# ------------------------------------------------------------------ 4./5. depth: refused before 202


@pytest.mark.parametrize("path", ["/events", "/namespaces/default/events"])
async def test_data_deeper_than_the_limit_is_refused_and_at_the_limit_delivered(
    gw: StandaloneGateway, sink: Sink, path: str
) -> None:
    limit = gw.gateway.settings.limits.max_json_depth
    too_deep = await post(gw.url + path, orjson.dumps(event(nested(limit + 1))), CE_JSON)
    assert_problem(too_deep, 422, "too-deep")
    second = orjson.dumps(event(None, id="e-2")).replace(b'"data":null', b'"data":' + nested_json(300))
    deep_batch = b"[" + orjson.dumps(event(nested(2))) + b"," + second + b"]"
    answer = await post(gw.url + path, deep_batch, {"Content-Type": "application/cloudevents-batch+json"})
    assert assert_problem(answer, 422, "too-deep")["errors"][0]["index"] == 1
    accepted = await post(gw.url + path, orjson.dumps(event(nested(limit))), CE_JSON)
    assert accepted.status == 202, accepted.body
    delivered = await sink.wait_for(1)
    assert orjson.loads(delivered[0].body)["data"] == nested(limit)


async def test_webhook_body_deeper_than_the_limit_is_refused(gw: StandaloneGateway, sink: Sink) -> None:
    answer = await post(f"{gw.url}/webhooks/open", nested_json(300), {"Content-Type": "application/json"})
    assert_problem(answer, 422, "too-deep")
    assert sink.requests == []


async def test_huge_jwt_exp_is_401_not_500(gw: StandaloneGateway) -> None:
    payload = orjson.dumps({"iss": ISSUER, "iat": int(time.time())})[:-1] + b',"exp":1' + b"0" * 400 + b"}"
    token = jwt.api_jws.PyJWS().encode(payload, JWT_SECRET, algorithm="HS256")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    answer = await post(f"{gw.url}/webhooks/jwt", b"{}", headers)
    assert_problem(answer, 401, "unauthorized")


# ------------------------------------------------------------------ 2. templates: budget, off the loop


@pytest.mark.timeout(120)
async def test_a_runaway_mapping_is_422_naming_the_mapping_and_healthz_keeps_answering(
    gw: StandaloneGateway, sink: Sink
) -> None:
    heavy = [
        asyncio.create_task(post(f"{gw.url}/webhooks/heavy", b"{}", {"Content-Type": "application/json"}))
        for _ in range(4)
    ]
    probes = 0
    while not all(task.done() for task in heavy):
        answer = await call("GET", f"{gw.url}/healthz")
        assert answer.status == 200
        probes += 1
    for task in heavy:
        body = assert_problem(task.result(), 422, "mapping-budget-exceeded")
        assert body["mapping"] == "heavy"
        assert "'heavy'" in body["detail"]
    assert probes >= 2  # the loop served probes while four renders ran
    assert sink.requests == []


# ------------------------------------------------------------------ 8. parser errors, disconnects, lax


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: snappy\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    ],
    ids=["bad-header-byte", "oversized-header", "unknown-content-encoding", "bad-version", "double-length"],
)
async def test_aiohttp_parser_errors_are_problem_json(gw: StandaloneGateway, request_bytes: bytes) -> None:
    status, problem = problem_from_raw(await raw_exchange(gw.port, request_bytes))
    assert 400 <= status < 500
    assert "Traceback" not in problem["detail"]


async def test_a_client_leaving_mid_body_logs_no_traceback(
    gw: StandaloneGateway, caplog: pytest.LogCaptureFixture
) -> None:
    head = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
    for _ in range(5):
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(head + b"Content-Length: 1000\r\n\r\n" + b'{"specversion"')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
    assert (await call("GET", f"{gw.url}/healthz")).status == 200
    await asyncio.sleep(0.2)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)


async def test_lax_profile_violations_are_counted_and_logged_rarely(
    gw: StandaloneGateway, caplog: pytest.LogCaptureFixture
) -> None:
    # "source" must be a URN (and more) under NL GOV: the lax profile accepts, warns and counts.
    with caplog.at_level(logging.WARNING, logger="openconnector.gateway.events"):
        for n in range(30):
            answer = await post(f"{gw.url}/events", orjson.dumps(event({"n": n}, id=f"e-{n}")), CE_JSON)
            assert answer.status == 202, answer.body
            assert answer.json()["warnings"]
    lines = [r for r in caplog.records if "NL GOV profile (lax)" in r.getMessage()]
    assert len(lines) <= 1
    counted = gw.gateway.metrics.events_profile_warnings.labels(LAX_TYPE)._value.get()
    assert counted >= 30


# ------------------------------------------------------------------ 6. timeouts and the connection cap


async def test_body_that_does_not_arrive_in_time_is_408(
    tmp_path: Path, start_gateway: StartGateway, sink: Sink
) -> None:
    limits = RequestLimits(body_timeout=0.5)
    gw = await start_gateway(hardening_manifests(tmp_path / "m", sink), limits=limits)
    head = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
    status, problem = problem_from_raw(await raw_exchange(gw.port, head + b"Content-Length: 100\r\n\r\n{"))
    assert status == 408
    assert problem["type"].endswith("/request-timeout")


@pytest.mark.timeout(60)
async def test_slow_clients_are_cut_off_and_normal_requests_still_served(
    tmp_path: Path, start_gateway: StartGateway, sink: Sink
) -> None:
    """150 slow-header sockets and 40 idle ones (≤ 200 in all, ≤ 30 s)."""
    limits = RequestLimits(header_timeout=1.0, keepalive_timeout=1.5)
    gw = await start_gateway(hardening_manifests(tmp_path / "m", sink), limits=limits)
    slow = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(150)]
    idle = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(40)]
    for _, writer in slow:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for _ in range(40):
            for _, writer in slow:
                if not writer.is_closing():
                    writer.write(b"X-Slow: 1\r\n")
            await asyncio.sleep(0.25)

    trickling = asyncio.create_task(trickle())
    served = 0
    started = time.monotonic()
    while time.monotonic() - started < 3.0:
        assert (await call("GET", f"{gw.url}/healthz")).status == 200
        served += 1
        await asyncio.sleep(0.05)
    assert served > 10

    async def closed_by_gateway(reader: asyncio.StreamReader) -> bool:
        try:
            await asyncio.wait_for(reader.read(), 10)  # returns at EOF: the gateway closed
        except ConnectionError:
            return True  # closed with our unread bytes pending: a reset is a close too
        except TimeoutError:
            return False
        return True

    outcomes = await asyncio.gather(*(closed_by_gateway(reader) for reader, _ in slow + idle))
    trickling.cancel()
    assert all(outcomes)
    for _, writer in slow + idle:
        writer.close()
    assert (await call("GET", f"{gw.url}/healthz")).status == 200


# ------------------------------------------------------------------ 7. SSRF in a running gateway


async def test_metadata_endpoints_do_not_become_ready(tmp_path: Path, start_gateway: StartGateway) -> None:
    docs = [
        resource("Event", "lax", {"name": "Lax", "type": LAX_TYPE, "source": "/s", "profile": "cloudevents"}),
        resource("EventSubscription", "imds", {"eventType": LAX_TYPE, "endpoint": "http://169.254.169.254/latest"}),
        resource("Source", "imds-int", {"location": "http://2852039166/"}),
    ]  # fmt: skip
    directory = tmp_path / "ssrf"
    directory.mkdir()
    (directory / "m.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    gw = await start_gateway(directory)
    answer = await call("GET", f"{gw.url}/api/v1alpha1/status")
    statuses = {r["name"]: r["status"] for r in answer.json()["resources"]}
    for name, field in (("imds", "spec.endpoint"), ("imds-int", "spec.location")):
        ready = next(c for c in statuses[name]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"
        assert ready["reason"] == "EgressDenied"
        assert ready["message"].startswith(field)


# ------------------------------------------------------------------ Expect: 100-continue
# The body is invited only once the head passed every check, so a request refused on its head gets its
# answer instead of 100 Continue; any other expectation gets 417 problem+json (aiohttp's is text/plain).


def expect_head(path: str, length: int, content_type: str, expect: str = "100-continue") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nExpect: {expect}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_an_oversized_body_is_refused_without_being_invited(gw: StandaloneGateway) -> None:
    too_large = gw.gateway.settings.max_event_bytes + 1
    answer = await raw_exchange(gw.port, expect_head("/events", too_large, "application/cloudevents+json"))
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:80]
    status, problem = problem_from_raw(answer)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (413, "body-too-large")


async def test_an_unknown_webhook_endpoint_is_refused_without_being_invited(gw: StandaloneGateway) -> None:
    answer = await raw_exchange(gw.port, expect_head("/webhooks/nobody-here", 10, "application/json"))
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:80]
    status, problem = problem_from_raw(answer)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (404, "unknown-endpoint")


async def test_an_acceptable_head_is_invited_and_its_event_accepted(
    gw: StandaloneGateway, sink: Sink
) -> None:
    event = {"specversion": "1.0", "id": "x-1", "source": "/s", "type": LAX_TYPE, "data": {"a": 1}}
    body = orjson.dumps(event)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(expect_head("/events", len(body), "application/cloudevents+json"))
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        await writer.drain()
        final = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert final.startswith(b"HTTP/1.1 202"), final[:200]
    assert b"100 Continue" not in final
    delivered = await sink.wait_for(1)
    assert orjson.loads(delivered[0].body)["id"] == "x-1"


async def test_a_body_sent_with_its_head_gets_no_interim_answer(gw: StandaloneGateway) -> None:
    event = {"specversion": "1.0", "id": "x-2", "source": "/s", "type": LAX_TYPE}
    body = orjson.dumps(event)
    answer = await raw_exchange(
        gw.port, expect_head("/events", len(body), "application/cloudevents+json") + body
    )
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]


@pytest.mark.parametrize(
    "path", ["/events", "/webhooks/open", "/api/v1alpha1/subscriptions/default/x/replay"]
)
async def test_an_unknown_expectation_is_417_problem_json(gw: StandaloneGateway, path: str) -> None:
    answer = await raw_exchange(gw.port, expect_head(path, 2, "application/json", expect="teapot") + b"{}")
    status, problem = problem_from_raw(answer)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (417, "expectation-failed")
    assert "teapot" in problem["detail"]
