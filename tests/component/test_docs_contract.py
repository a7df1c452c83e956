"""Docs are a contract: what README.md and docs/*.md say about the gateway, checked against a running one.

Each test quotes the documented line it checks. Claims other test files already prove are not repeated
here; these are the ones that had no test, or that the docs got wrong before.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION
from openconnector.delivery.durable import ACK_WAIT_MARGIN
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.gateway.metrics import GatewayMetrics
from openconnector.gateway.problems import PROBLEM_BASE
from tests.component.conftest import StartGateway, example_manifests
from tests.component.test_webhook_ingress import PAYLOAD, SCHEMES
from tests.component.test_webhook_ingress import manifests as webhook_manifests
from tests.support.http import assert_problem, call, post
from tests.support.polling import eventually
from tests.support.signing import standard_webhook_headers
from tests.support.sinks import Reply, Sink

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "operator" / "openconnector"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK = "/webhooks/zaaksysteem/zaken"


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading) + 1 :]
    following = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[: following.start()] if following else rest


def _documented_slugs() -> set[str]:
    slugs: set[str] = set()
    for line in _section(OPERATIONS, "## Problem types").splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().isdigit():
            slugs.update(re.findall(r"`([a-z-]+)`", cells[2]))
    return slugs


_SLUG_CALL = re.compile(r"\b(?:Refusal|problem|problem_body)\(\s*\d{3},\s*\"([a-z-]+)\"")
_SLUG_CHOICE = re.compile(r"\"([a-z-]+)\" if [^\n]* else \"([a-z-]+)\"")


def _answered_slugs() -> set[str]:
    """Every problem slug the source can answer with (calls with a literal slug, the slug choices, the
    table of the problem routes for aiohttp's own errors, and the auth failures)."""
    slugs: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        slugs.update(_SLUG_CALL.findall(text))
        if path.name in {"events.py", "ingest.py", "verifiers.py", "server.py"}:
            for line in text.splitlines():
                if ".labels(" not in line:  # metric labels are chosen the same way; they are not slugs
                    for pair in _SLUG_CHOICE.findall(line):
                        slugs.update(pair)
    app = (SOURCE / "gateway" / "routes.py").read_text()
    table = app[app.index("_SLUGS = {") : app.index("}", app.index("_SLUGS = {"))]
    slugs.update(re.findall(r"\"([a-z-]+)\"", table))
    return slugs


def test_problem_types_table_names_exactly_the_slugs_the_gateway_answers() -> None:
    """operations.md, "Problem types": "`type` is `https://openconnector.nl/problems/<slug>`, one of
    these slugs"."""
    assert PROBLEM_BASE == "https://openconnector.nl/problems/"
    documented, answered = _documented_slugs(), _answered_slugs()
    assert "unauthorized" in answered
    assert "mapping-failed" in answered
    assert documented - answered == set(), "documented but never answered"
    assert answered - documented == set(), "answered but not documented"


def test_documented_metric_names_are_exported() -> None:
    """operations.md, "Metrics and the dashboard": "All names are defined in
    `operator/openconnector/gateway/metrics.py`": the table names every series, and only those."""
    section = _section(OPERATIONS, "## Metrics and the dashboard")
    table = "\n".join(line for line in section.splitlines() if line.startswith("| "))
    documented = set(re.findall(r"`(openconnector_[a-z_]+?)(?:_\*)?(?:\{[a-z]+\})?`", table))
    exported = {collector.name for collector in GatewayMetrics().registry.collect()}
    # prometheus_client names a counter without its _total suffix; the docs name the exported series.
    assert {name.removesuffix("_total") for name in documented} == exported


def test_deliveries_outcome_labels_are_the_documented_ones() -> None:
    """operations.md: "`openconnector_deliveries_total{outcome}` (`delivered`, `dead_lettered`,
    `dropped`: how each event ended ...)"."""
    metrics = GatewayMetrics()
    series = metrics.subscription(ResourceKey(EVENT_SUBSCRIPTION.kind, "ns", "sub"))
    for outcome in FinalOutcome:
        series.outcome(outcome.value)
    labels = {
        sample.labels["outcome"]
        for collector in metrics.registry.collect()
        if collector.name == "openconnector_deliveries"
        for sample in collector.samples
        if sample.name.endswith("_total")
    }
    assert labels == {"delivered", "dead_lettered", "dropped"}


def test_ack_wait_is_the_attempt_timeout_plus_five_seconds() -> None:
    """operations.md, "Graceful shutdown": "an attempt cut off by SIGKILL comes back after AckWait (the
    subscription's `timeout` + 5 s)"; architecture.md: "AckWait = per-attempt timeout + 5 s"."""
    assert ACK_WAIT_MARGIN == 5.0


async def test_readyz_before_the_first_table_is_503_with_retry_after() -> None:
    """operations.md, "Probes": readiness is "503 until the first routing table is built, then 200";
    "Problem types": "Every 503 carries `Retry-After` (seconds)"."""
    gateway = Gateway(GatewaySettings())
    await gateway.start()
    try:
        async with TestClient(TestServer(build_app(gateway))) as client:
            answer = await client.get("/readyz")
            assert answer.status == 503
            assert answer.headers["Content-Type"].startswith("application/problem+json")
            assert int(answer.headers["Retry-After"]) > 0
            assert (await answer.json())["type"] == PROBLEM_BASE + "not-ready"
    finally:
        await gateway.close()


async def test_probes_answer_as_documented(tmp_path: Path, start_gateway: StartGateway) -> None:
    """operations.md, "Probes": `/healthz` is the startup probe, `/readyz` "503 until the first routing
    table is built, then 200"."""
    gw = await start_gateway(
        example_manifests(tmp_path / "m", subscriber="http://127.0.0.1:9", register="http://127.0.0.1:9")
    )
    health = await call("GET", f"{gw.url}/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    ready = await call("GET", f"{gw.url}/readyz")
    assert ready.status == 200
    assert ready.json()["status"] == "ready"
    assert isinstance(ready.json()["routingTableVersion"], int)


async def test_webhook_handshake_answers_origin_rate_and_allow(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    """consumers.md: "`OPTIONS /webhooks/<endpoint>` answers the CloudEvents webhook handshake
    ... `WebHook-Allowed-Rate` (120 per minute when a `WebHook-Request-Rate` was asked, else `*`)"; "`OPTIONS
    /events` answers the same handshake"
    (architecture.md: "Both routes ... answer the CloudEvents abuse-protection handshake (OPTIONS)")."""
    gw = await start_gateway(
        example_manifests(tmp_path / "m", subscriber="http://127.0.0.1:9", register="http://127.0.0.1:9")
    )
    for path in (WEBHOOK, "/events"):
        answer = await call(
            "OPTIONS",
            f"{gw.url}{path}",
            headers={"WebHook-Request-Origin": "eventemitter.example.com", "WebHook-Request-Rate": "60"},
        )
        assert answer.status == 200, path
        assert answer.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com"
        assert answer.headers["WebHook-Allowed-Rate"] == "120"
        assert "POST" in answer.headers["Allow"]
        unrated = await call("OPTIONS", f"{gw.url}{path}", headers={"WebHook-Request-Origin": "e.example"})
        assert (unrated.status, unrated.headers["WebHook-Allowed-Rate"]) == (200, "*")
    unknown = await call("OPTIONS", f"{gw.url}/webhooks/nobody", headers={"WebHook-Request-Origin": "x"})
    assert_problem(unknown, 404, "unknown-endpoint")


async def test_readme_walkthrough_answers_201_then_401_for_the_replay(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    """README: "The answer is `201 {"targetStatus": 201, "id": "…", "eventId": "…"}` ... Send it again
    unchanged and the `webhook-id` is refused as a replay (401)"; consumers.md: a leading or trailing `/`
    of the endpoint "is ignored"."""
    async with Sink() as subscriber, Sink(Reply(201, body=b'{"id": "obj-1"}')) as register:
        manifests = example_manifests(
            tmp_path / "m",
            subscriber=f"http://127.0.0.1:{subscriber.port}",
            register=f"http://127.0.0.1:{register.port}",
        )
        gw = await start_gateway(manifests)
        body = (ROOT / "examples" / "payloads" / "zaak-webhook.json").read_bytes()
        headers = {
            **standard_webhook_headers((SECRET,), "msg_docs_1", int(time.time()), body),
            "Content-Type": "application/json",
        }
        first = await post(f"{gw.url}{WEBHOOK}/", body, headers)
        assert first.status == 201, first.body
        assert set(first.json()) == {"targetStatus", "id", "eventId"}
        assert first.json()["targetStatus"] == 201
        again = await post(f"{gw.url}{WEBHOOK}", body, headers)
        assert_problem(again, 401, "unauthorized")
        assert "WWW-Authenticate" in again.headers


async def test_ui_counts_failed_events_not_attempts(tmp_path: Path, start_gateway: StartGateway) -> None:
    """ui.md: the subscriptions page shows "the delivery counters (delivered, failed events ...)"; the
    counter is `status.failed`, "Events whose delivery to the subscriber failed" (crd-reference.md)."""
    gw = await start_gateway(
        example_manifests(tmp_path / "m", subscriber="http://127.0.0.1:9", register="http://127.0.0.1:9")
    )
    page = await call("GET", f"{gw.url}/ui/", headers={"Accept": "text/html"})
    assert page.status == 200
    html = page.body.decode()
    assert "Failed events" in html
    assert "Failed attempts" not in html


def test_problem_table_claims_every_503_has_retry_after() -> None:
    """operations.md, "Problem types": "Every 503 carries `Retry-After` (seconds)": each 503 in the
    source is built with a Retry-After header."""
    offenders = []
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"\b(?:Refusal|problem)\(\s*503,", text):
            call_text = text[max(0, match.start() - 200) : match.start() + 400]
            if "Retry-After" not in call_text and "_RETRY_AFTER" not in call_text:
                offenders.append(f"{path.relative_to(SOURCE)}:{text[: match.start()].count(chr(10)) + 1}")
    assert offenders == []


def test_problem_json_is_what_assert_problem_checks() -> None:
    """A guard for this file's helper: the problem body the docs describe (`type`, `title`, `status`,
    `detail`)."""
    from openconnector.gateway.problems import problem_body

    body = problem_body(404, "not-found", "nothing is served at /x")
    assert orjson.loads(orjson.dumps(body)) == {
        "type": PROBLEM_BASE + "not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "nothing is served at /x",
    }


def _documented_challenges() -> dict[str, str]:
    """consumers.md's auth table: type -> the auth scheme of the `WWW-Authenticate` its 401 carries."""
    found: dict[str, str] = {}
    for line in (ROOT / "docs" / "consumers.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) == 6 and re.fullmatch(r"`[a-zA-Z]+`", cells[1]) and cells[4].startswith("`"):
            found[cells[1].strip("`")] = cells[4].strip("`").split(" ", 1)[0]
    return found


@pytest.mark.parametrize("scheme_id", SCHEMES.keys())
async def test_every_webhook_401_carries_the_documented_challenge(
    tmp_path: Path, start_gateway: StartGateway, scheme_id: str
) -> None:
    """consumers.md, "Authentication": the table's column "a 401 carries `WWW-Authenticate`" (RFC 9110
    §11.6.1: a 401 must carry a challenge), for missing and for wrong credentials."""
    documented = _documented_challenges()
    assert set(documented) == {"bearer", "basic", "apiKey", "hmac", "github", "jwt"}
    expected = documented[scheme_id.split("-", 1)[0]]
    scheme = SCHEMES[scheme_id]
    async with Sink() as target:
        gw = await start_gateway(webhook_manifests(tmp_path / "m", target))
        url = f"{gw.url}/webhooks/{scheme.endpoint}"
        json = {"Content-Type": "application/json"}
        missing = await post(url, PAYLOAD, json)
        wrong = await post(url, PAYLOAD, {**json, **scheme.invalid[0](PAYLOAD)})
    for answer in (missing, wrong):
        assert_problem(answer, 401, "unauthorized")
        assert answer.headers["WWW-Authenticate"].split(" ", 1)[0] == expected
        assert 'realm="openconnector"' in answer.headers["WWW-Authenticate"]


README_EVENT = orjson.dumps(
    {
        "specversion": "1.0",
        "id": "e1",
        "type": "nl.vng.zgw.zaken.zaak.created",
        "source": "urn:nld:oin:00000001823288444000:systeem:zaaksysteem",
        "subject": "ZAAK-1",
        "data": {"zaakUrl": "https://zaken.example.nl/1", "identificatie": "ZAAK-1", "status": "open"},
    }
)


@pytest.mark.parametrize("content_mode", ["structured", "binary"])
async def test_message_log_shows_the_content_type_as_sent(
    tmp_path: Path, start_gateway: StartGateway, content_mode: str
) -> None:
    """messages.md, "No secrets in the log": "`spec.headers` ... and the CloudEvents headers are shown as
    sent" — the logged Content-Type is the one the subscriber received (README's `/events` example)."""
    async with Sink() as subscriber:
        manifests = example_manifests(
            tmp_path / "m", subscriber=f"http://127.0.0.1:{subscriber.port}", register="http://127.0.0.1:9"
        )
        subscription = manifests / "20-subscription.yaml"
        subscription.write_text(
            subscription.read_text().replace("contentMode: structured", f"contentMode: {content_mode}")
        )
        gw = await start_gateway(manifests)
        answer = await post(
            f"{gw.url}/events", README_EVENT, {"Content-Type": "application/cloudevents+json"}
        )
        assert answer.status == 202, answer.body
        received = (await subscriber.wait_for(1))[0]
        messages = f"{gw.url}/api/v1alpha1/subscriptions/default/zaak-created-to-notifier/messages"

        async def logged_attempts() -> list[dict[str, object]]:
            listed = (await call("GET", messages)).json()["items"]
            if not listed:
                return []
            attempts: list[dict[str, object]] = (await call("GET", f"{messages}/{listed[0]['id']}")).json()[
                "attempts"
            ]
            return attempts

        attempts = await eventually(logged_attempts, what="the logged attempt")
    sent = attempts[0]["requestHeaders"]
    assert isinstance(sent, dict)
    assert sent["Content-Type"] == received.headers["Content-Type"]
    assert sent["Authorization"] == "[redacted]"


async def test_readme_events_example_is_accepted(tmp_path: Path, start_gateway: StartGateway) -> None:
    """README: "Events can also be posted directly, in any CloudEvents HTTP mode" — its structured
    example "answers `202 {"accepted": 1, "deliveries": 1}`" with the example subscription."""
    async with Sink() as subscriber:
        gw = await start_gateway(
            example_manifests(
                tmp_path / "m",
                subscriber=f"http://127.0.0.1:{subscriber.port}",
                register="http://127.0.0.1:9",
            )
        )
        answer = await post(
            f"{gw.url}/events", README_EVENT, {"Content-Type": "application/cloudevents+json"}
        )
        assert (answer.status, answer.json()) == (202, {"accepted": 1, "deliveries": 1})
        delivered = orjson.loads((await subscriber.wait_for(1))[0].body)
        assert (delivered["id"], delivered["subject"]) == ("e1", "ZAAK-1")


async def test_events_token_is_a_bearer_token(tmp_path: Path, start_gateway: StartGateway) -> None:
    """operations.md, "The `/events` token": "Producers send `Authorization: Bearer <token>`"; without it
    `/events` answers 401 `unauthorized` with `WWW-Authenticate` ("Problem types")."""
    gw = await start_gateway(
        example_manifests(tmp_path / "m", subscriber="http://127.0.0.1:9", register="http://127.0.0.1:9"),
        events_token="events-token-0123456789",
    )
    structured = {"Content-Type": "application/cloudevents+json"}
    refused = await post(f"{gw.url}/events", README_EVENT, structured)
    assert_problem(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await post(f"{gw.url}/events", README_EVENT, {**structured, "Authorization": "Bearer nope"})
    assert_problem(wrong, 401, "unauthorized")
    accepted = await post(
        f"{gw.url}/events", README_EVENT, {**structured, "Authorization": "Bearer events-token-0123456789"}
    )
    assert accepted.status == 202, accepted.body


def _event_requiring(namespace: str, field: str) -> dict[str, object]:
    return {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": "Event",
        "metadata": {"name": "thing", "namespace": namespace},
        "spec": {
            "type": "nl.example.thing.created",
            "source": "urn:nld:oin:00000001823288444000:systeem:test",
            "schema": {"inline": {"type": "object", "required": [field]}},
        },
    }


async def test_shared_events_endpoint_validates_against_every_defining_namespace(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    """architecture.md: "`POST /namespaces/<ns>/events` validates against `<ns>`'s Event, and the shared
    `/events` ... against each of those Events (... a refusal names the Event whose schema refused)"."""
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "events.yaml").write_text(
        yaml.safe_dump_all([_event_requiring("team-a", "a"), _event_requiring("team-b", "b")])
    )
    gw = await start_gateway(directory)
    only_a = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "x1",
            "type": "nl.example.thing.created",
            "source": "urn:nld:oin:00000001823288444000:systeem:test",
            "data": {"a": 1},
        }
    )
    structured = {"Content-Type": "application/cloudevents+json"}
    shared = await post(f"{gw.url}/events", only_a, structured)
    problem = assert_problem(shared, 422, "event-not-acceptable")
    assert [error["detail"] for error in problem["errors"]] == [
        "data: 'b' is a required property (Event team-b/thing)"
    ]
    confined = await post(f"{gw.url}/namespaces/team-a/events", only_a, structured)
    assert confined.status == 202, confined.body
