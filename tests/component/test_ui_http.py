"""The web page (``/ui``) over HTTP, without a browser: who gets HTML and who gets problem+json, sign-in,
form tokens against cross-site requests, escaping, bounds and the security headers.

The browser tier (tests/browser) drives the same pages in chromium; this tier checks every refusal.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml

from openconnector.delivery.jetstream import JetStreamSettings
from openconnector.gateway.core import GatewaySettings
from openconnector.messages.access import KubernetesAuthorizer, Principal, Verb
from openconnector.messages.model import MessageRecord, MessageStatus
from openconnector.standalone import StandaloneGateway, start_standalone
from tests.component.natsserver import NatsServer
from tests.support.http import Answer, assert_problem, post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

TOKEN = "component-ui-token"
EVENT_TYPE = "nl.example.zaak.created"
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
COOKIE = {"Cookie": f"openconnector-ui={TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SUBJECT = '<script>alert("zaak")</script>'


async def fetch(
    method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> Answer:
    """One request, redirects not followed (the tests look at them)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=dict(headers or {}), allow_redirects=False) as answer,
    ):
        return Answer(answer.status, answer.headers, await answer.read())


def form_token(page: Answer) -> str:
    found = re.search(rb'name="form_token" value="([^"]+)"', page.body)
    assert found, page.body
    return found.group(1).decode()


class World:
    def __init__(self, standalone: StandaloneGateway, sink: Sink) -> None:
        self.standalone = standalone
        self.sink = sink
        self.namespace = standalone.gateway.messages.subscriptions()[0][0]

    @property
    def url(self) -> str:
        return self.standalone.url

    @property
    def log_url(self) -> str:
        return f"{self.url}/ui/subscriptions/{self.namespace}/archive"

    async def message(self, event_id: str) -> MessageRecord:
        page = await self.standalone.gateway.messages.list_messages(self.namespace, "archive", limit=50)
        return next(record for record in page.items if record.event_id == event_id)

    async def message_url(self, event_id: str) -> str:
        return f"{self.log_url}/messages/{(await self.message(event_id)).id}"


async def start_world(tmp_path: Path, sink: Sink, *, token: str | None, **settings: Any) -> World:
    directory = tmp_path / "manifests"
    directory.mkdir()
    subscription = {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": "EventSubscription",
        "metadata": {"name": "archive"},
        "spec": {"eventType": EVENT_TYPE, "endpoint": sink.url, "delivery": {"retries": 0}},
    }
    (directory / "subscription.yaml").write_text(yaml.safe_dump(subscription))
    gateway_settings = GatewaySettings(
        port=0, drain_seconds=1.0, allow_unknown_types=True, api_token=token, **settings
    )
    return World(await start_standalone([directory], gateway_settings, watch=False), sink)


async def publish(world: World, event_id: str, status: MessageStatus) -> None:
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:test",
        "type": EVENT_TYPE,
        "subject": SUBJECT,
    }
    answer = await post(
        f"{world.url}/events", json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"}
    )
    assert answer.status == 202, answer.body
    await eventually(lambda: world.message(event_id), until=lambda record: record.status is status)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with Sink(Reply(500), default=Reply(200)) as sink:
        world = await start_world(tmp_path, sink, token=TOKEN)
        try:
            await publish(world, "failed-1", MessageStatus.DROPPED)
            yield world
        finally:
            await world.standalone.stop()


# ------------------------------------------------------------------------------ who gets what


async def test_without_sign_in_a_browser_is_sent_to_the_sign_in_form_and_a_client_gets_401(
    world: World,
) -> None:
    browser = await fetch("GET", world.log_url + "?status=failed", headers=HTML)
    assert browser.status == 303
    asked = f"/ui/subscriptions/{world.namespace}/archive?status=failed"
    assert browser.headers["Location"] == "/ui/login?" + urlencode({"next": asked})
    client = await fetch("GET", world.log_url)
    assert_problem(client, 401, "unauthenticated")
    assert client.headers["WWW-Authenticate"].startswith("Bearer")
    # A stale cookie is no sign-in either; the browser is told to forget it.
    stale = await fetch("GET", world.log_url, headers={**HTML, "Cookie": "openconnector-ui=stale"})
    assert stale.status == 303
    assert 'openconnector-ui=""' in stale.headers["Set-Cookie"]


async def test_refusals_are_html_pages_for_browsers_and_problem_json_for_clients(world: World) -> None:
    unknown = f"{world.url}/ui/subscriptions/{world.namespace}/nope"
    assert_problem(await fetch("GET", unknown, headers=BEARER), 404, "unknown-subscription")
    page = await fetch("GET", unknown, headers={**HTML, **COOKIE})
    assert page.status == 404
    assert page.content_type == "text/html"
    assert b"<h1>Not found</h1>" in page.body
    assert f"no subscription {world.namespace}/nope".encode() in page.body

    bad_filter = await fetch("GET", world.log_url + "?status=lost", headers=BEARER)
    assert_problem(bad_filter, 400, "invalid-filter")
    assert (await fetch("GET", world.log_url + "?status=lost", headers={**HTML, **COOKIE})).status == 400

    nowhere = f"{world.url}/ui/no/such/page"
    assert_problem(await fetch("GET", nowhere), 404, "not-found")
    assert (await fetch("GET", nowhere, headers=HTML)).content_type == "text/html"


async def test_pages_carry_the_security_headers_and_escape_what_events_say(world: World) -> None:
    page = await fetch("GET", world.log_url, headers={**HTML, **COOKIE})
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert SUBJECT.encode() not in page.body
    assert b"&lt;script&gt;alert(&#34;zaak&#34;)&lt;/script&gt;" in page.body
    assert b"failed-1" in page.body
    stylesheet = await fetch("GET", f"{world.url}/ui/static/ui.css")
    assert stylesheet.status == 200
    assert stylesheet.content_type == "text/css"


# -------------------------------------------------------------------------------------- sign-in


async def test_sign_in_sets_a_strict_http_only_cookie_and_goes_only_to_pages_of_the_ui(world: World) -> None:
    answer = await fetch(
        "POST",
        f"{world.url}/ui/login",
        headers={**HTML, **FORM, "Origin": world.url},
        body=urlencode({"token": TOKEN, "next": world.log_url.removeprefix(world.url)}).encode(),
    )
    assert answer.status == 303
    assert answer.headers["Location"] == world.log_url.removeprefix(world.url)
    cookie = answer.headers["Set-Cookie"]
    assert f"openconnector-ui={TOKEN}" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie

    for elsewhere in ("//example.org/ui/", "https://example.org/ui/", "/api/v1alpha1/subscriptions"):
        answer = await fetch(
            "POST", f"{world.url}/ui/login", headers={**HTML, **FORM},
            body=urlencode({"token": TOKEN, "next": elsewhere}).encode(),
        )  # fmt: skip
        assert answer.headers["Location"] == "/ui/", elsewhere


async def test_a_wrong_or_empty_token_stays_on_the_form_with_the_reason(world: World) -> None:
    wrong = await fetch(
        "POST", f"{world.url}/ui/login", headers={**HTML, **FORM}, body=b"token=nope&next=%2Fui%2F"
    )
    assert wrong.status == 401
    assert b"That token was not accepted." in wrong.body
    assert "Set-Cookie" not in wrong.headers
    empty = await fetch("POST", f"{world.url}/ui/login", headers={**HTML, **FORM}, body=b"token=")
    assert empty.status == 400
    assert b'aria-invalid="true"' in empty.body
    cross_site = await fetch(
        "POST", f"{world.url}/ui/login", headers={**HTML, **FORM, "Sec-Fetch-Site": "cross-site"},
        body=urlencode({"token": TOKEN}).encode(),
    )  # fmt: skip
    assert cross_site.status == 403
    assert "Set-Cookie" not in cross_site.headers


# ------------------------------------------------------------------------------- resend, replay


async def test_resend_needs_the_form_token_of_the_session(world: World) -> None:
    message_url = await world.message_url("failed-1")
    page = await fetch("GET", message_url, headers={**HTML, **COOKIE})
    token = form_token(page)
    resend = message_url + "/resend"

    missing = await fetch("POST", resend, headers={**COOKIE, **FORM}, body=b"")
    assert_problem(missing, 403, "invalid-form-token")
    other_session = await fetch(
        "POST", resend, headers={**FORM, "Cookie": "openconnector-ui=someone-else"},
        body=urlencode({"form_token": token}).encode(),
    )  # fmt: skip
    assert_problem(other_session, 403, "invalid-form-token")
    for foreign in ({"Origin": "http://example.org"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = await fetch(
            "POST",
            resend,
            headers={**COOKIE, **FORM, **foreign},
            body=urlencode({"form_token": token}).encode(),
        )
        assert_problem(answer, 403, "invalid-form-token")
    assert len(world.sink.requests) == 1  # nothing was resent

    same_origin = {"Origin": world.url, "Sec-Fetch-Site": "same-origin"}
    done = await fetch(
        "POST", resend, headers={**HTML, **COOKIE, **FORM, **same_origin},
        body=urlencode({"form_token": token}).encode(),
    )  # fmt: skip
    assert done.status == 303
    assert done.headers["Location"] == message_url.removeprefix(world.url) + "?notice=resent"
    record = await eventually(
        lambda: world.message("failed-1"), until=lambda record: record.status is MessageStatus.DELIVERED
    )
    assert [attempt.response_status for attempt in record.attempts] == [500, 200]


async def test_replay_resends_the_failed_messages_since_a_time(world: World) -> None:
    token = form_token(await fetch("GET", world.log_url, headers={**HTML, **COOKIE}))
    body = urlencode(
        [
            ("form_token", token),
            ("since", "2000-01-01T00:00"),
            ("statuses", "dead-lettered"),
            ("statuses", "dropped"),
        ]
    ).encode()
    answer = await fetch("POST", world.log_url + "/replay", headers={**HTML, **COOKIE, **FORM}, body=body)
    assert answer.status == 303
    assert answer.headers["Location"].endswith("?notice=replayed&count=1")
    await eventually(
        lambda: world.message("failed-1"), until=lambda record: record.status is MessageStatus.DELIVERED
    )
    page = await fetch("GET", world.url + answer.headers["Location"], headers={**HTML, **COOKIE})
    assert b"Replay queued: 1 message will be delivered again." in page.body

    bad = urlencode({"form_token": token, "since": "yesterday"}).encode()
    refused = await fetch("POST", world.log_url + "/replay", headers={**COOKIE, **FORM}, body=bad)
    assert_problem(refused, 400, "invalid-form")


async def test_who_may_read_but_not_update_sees_the_page_and_is_refused_resend(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def read_only(principal: Principal, verb: Verb, namespace: str, name: str) -> bool:
        return verb == "get"

    monkeypatch.setattr(world.standalone.gateway.authorizer, "allowed", read_only)
    message_url = await world.message_url("failed-1")
    page = await fetch("GET", message_url, headers={**HTML, **COOKIE})
    assert page.status == 200
    body = urlencode({"form_token": form_token(page)}).encode()
    refused = await fetch("POST", message_url + "/resend", headers={**HTML, **COOKIE, **FORM}, body=body)
    assert refused.status == 403
    assert b"<h1>Not allowed</h1>" in refused.body
    assert b"may not resend or replay" in refused.body
    api = await fetch("POST", message_url + "/resend", headers={**COOKIE, **FORM}, body=body)
    assert_problem(api, 403, "forbidden")
    assert len(world.sink.requests) == 1


async def test_a_form_is_bounded_in_size(world: World) -> None:
    message_url = await world.message_url("failed-1")
    huge = b"form_token=" + b"x" * (64 * 1024)
    answer = await fetch("POST", message_url + "/resend", headers={**COOKIE, **FORM}, body=huge)
    assert_problem(answer, 413, "form-too-large")


async def test_without_an_api_token_loopback_needs_no_sign_in(tmp_path: Path) -> None:
    async with Sink() as sink:
        world = await start_world(tmp_path, sink, token=None)
        try:
            page = await fetch("GET", f"{world.url}/ui/", headers=HTML)
            assert page.status == 200
            assert b"Open on loopback (no API token configured)" in page.body
            assert b"/archive" in page.body
            login = await fetch("GET", f"{world.url}/ui/login", headers=HTML)
            assert login.status == 303
            assert login.headers["Location"] == "/ui/"
        finally:
            await world.standalone.stop()


class FakeApiserver:
    """TokenReview and SubjectAccessReview: ``reader`` (token ``tok-reader``) may ``get`` in team-a only."""

    async def __call__(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        spec = body["spec"]
        if path.endswith("tokenreviews"):
            known = spec["token"] == "tok-reader"
            user = (
                {"authenticated": True, "user": {"username": "reader"}} if known else {"authenticated": False}
            )
            return 201, {"status": user}
        attributes = spec["resourceAttributes"]
        allowed = (spec["user"], attributes["verb"], attributes["namespace"]) == ("reader", "get", "team-a")
        return 201, {"status": {"allowed": allowed}}


async def test_in_a_cluster_the_page_shows_only_what_kubernetes_lets_the_user_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    for namespace in ("team-a", "team-b"):
        subscription = {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "EventSubscription",
            "metadata": {"name": "archive", "namespace": namespace},
            "spec": {"eventType": EVENT_TYPE, "endpoint": "http://127.0.0.1:9/events"},
        }
        (directory / f"{namespace}.yaml").write_text(yaml.safe_dump(subscription))
    settings = GatewaySettings(port=0, drain_seconds=1.0, allow_unknown_types=True)
    standalone = await start_standalone([directory], settings, watch=False)
    try:
        kubernetes = KubernetesAuthorizer(FakeApiserver())
        for method in ("authenticate", "allowed", "authorize"):
            monkeypatch.setattr(standalone.gateway.authorizer, method, getattr(kubernetes, method))
        reader = {**HTML, "Cookie": "openconnector-ui=tok-reader"}

        listing = await fetch("GET", f"{standalone.url}/ui/", headers=reader)
        assert listing.status == 200
        assert b"team-a/archive" in listing.body
        assert b"team-b" not in listing.body
        assert b"Signed in as <strong>reader</strong>" in listing.body

        other = await fetch("GET", f"{standalone.url}/ui/subscriptions/team-b/archive", headers=reader)
        assert other.status == 404  # as if it did not exist
        own = await fetch("GET", f"{standalone.url}/ui/subscriptions/team-a/archive", headers=reader)
        assert own.status == 200
        body = urlencode([("form_token", form_token(own)), ("since", "2000-01-01T00:00")]).encode()
        replay = await fetch(
            "POST",
            f"{standalone.url}/ui/subscriptions/team-a/archive/replay",
            headers={**reader, **FORM},
            body=body,
        )
        assert replay.status == 403
        assert b"reader may not resend or replay" in replay.body

        nobody = await fetch("GET", f"{standalone.url}/ui/", headers={**HTML, "Cookie": "openconnector-ui=x"})
        assert nobody.status == 303  # not a Kubernetes user: back to the sign-in form
    finally:
        await standalone.stop()


async def test_on_the_jetstream_bus_the_page_shows_the_log_and_resends(tmp_path: Path) -> None:
    with NatsServer() as server:
        jetstream = JetStreamSettings(servers=(server.url,), stream="UI", publish_timeout=2.0)
        async with Sink(Reply(500), default=Reply(200)) as sink:
            world = await start_world(tmp_path, sink, token=TOKEN, bus="jetstream", jetstream=jetstream)
            try:
                await eventually(
                    lambda: fetch("GET", f"{world.url}/readyz"),
                    until=lambda answer: answer.status == 200,
                    what="the gateway ready on JetStream",
                )
                await publish(world, "failed-1", MessageStatus.DROPPED)
                log_page = await fetch("GET", world.log_url + "?status=failed", headers={**HTML, **COOKIE})
                assert log_page.status == 200
                assert b"failed-1" in log_page.body
                message_url = await world.message_url("failed-1")
                page = await fetch("GET", message_url, headers={**HTML, **COOKIE})
                body = urlencode({"form_token": form_token(page)}).encode()
                done = await fetch(
                    "POST", message_url + "/resend", headers={**HTML, **COOKIE, **FORM}, body=body
                )
                assert done.status == 303
                record = await eventually(
                    lambda: world.message("failed-1"),
                    until=lambda record: record.status is MessageStatus.DELIVERED,
                )
                assert [attempt.response_status for attempt in record.attempts] == [500, 200]
                page = await fetch("GET", message_url, headers={**HTML, **COOKIE})
                assert b"2 attempts, oldest first" in page.body
            finally:
                await world.standalone.stop()


async def test_a_pull_subscription_offers_no_replay(tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    subscription = {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": "EventSubscription",
        "metadata": {"name": "puller"},
        "spec": {"eventType": EVENT_TYPE, "endpoint": "http://127.0.0.1:9/events", "style": "pull"},
    }
    (directory / "pull.yaml").write_text(yaml.safe_dump(subscription))
    settings = GatewaySettings(port=0, drain_seconds=1.0, allow_unknown_types=True, api_token=TOKEN)
    standalone = await start_standalone([directory], settings, watch=False)
    try:
        listing = await fetch("GET", f"{standalone.url}/ui/", headers={**HTML, **COOKIE})
        assert b'<span class="tag">pull</span>' in listing.body
        page = await fetch(
            "GET", f"{standalone.url}/ui/subscriptions/default/puller", headers={**HTML, **COOKIE}
        )
        assert page.status == 200
        assert b"This is a pull subscription" in page.body
        assert b"/replay" not in page.body
    finally:
        await standalone.stop()
