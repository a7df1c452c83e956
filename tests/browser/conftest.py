"""Browser tier: the web page (``/ui``) in Debian's headless chromium, driven by Playwright.

Nothing here downloads a browser: Playwright starts ``/usr/bin/chromium`` (``apt-get install chromium``;
``.ci/run`` installs it) with a fresh profile per test. Every request goes to loopback: the gateway and the
subscriber sink listen on 127.0.0.1, and chromium's own background traffic is switched off.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from playwright.async_api import BrowserContext, Page, async_playwright

from openconnector.gateway.core import GatewaySettings
from openconnector.messages.model import MessageRecord, MessageStatus
from openconnector.standalone import StandaloneGateway, start_standalone
from tests.support.http import post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ui-test-token-5b0f3c"
EVENT_TYPE = "nl.example.zaak.created"
EVENT_SOURCE = "urn:nld:oin:00000001823288444000:systeem:zaken"
SUBSCRIPTION = "zaken-archive"
DELIVERED_ID = "zaak-1001"
FAILED_ID = "zaak-1002"
SCREENSHOTS_ENV = "OPENCONNECTOR_UI_SCREENSHOTS"  # a directory: the tests save the docs' screenshots there


@dataclass(frozen=True)
class UiWorld:
    """A standalone gateway with one subscription whose sink took one event and failed the other."""

    standalone: StandaloneGateway
    sink: Sink
    namespace: str

    @property
    def url(self) -> str:
        return self.standalone.url

    @property
    def log_url(self) -> str:
        return f"{self.url}/ui/subscriptions/{self.namespace}/{SUBSCRIPTION}"

    async def message(self, event_id: str) -> MessageRecord:
        page = await self.standalone.gateway.messages.list_messages(self.namespace, SUBSCRIPTION, limit=50)
        return next(record for record in page.items if record.event_id == event_id)


def _manifests(directory: Path, sink: Sink) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    subscription = {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": "EventSubscription",
        "metadata": {"name": SUBSCRIPTION},
        # No retries: the 500 ends the first delivery (dropped), so "failed" needs no waiting.
        "spec": {"eventType": EVENT_TYPE, "endpoint": sink.url, "delivery": {"retries": 0}},
    }
    (directory / "subscription.yaml").write_text(yaml.safe_dump(subscription))
    return directory


async def _publish(gateway_url: str, event_id: str) -> None:
    event = {"specversion": "1.0", "id": event_id, "source": EVENT_SOURCE, "type": EVENT_TYPE,
             "subject": f"zaak/{event_id}", "data": {"zaak": event_id}}  # fmt: skip
    answer = await post(
        f"{gateway_url}/events", json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"}
    )
    assert answer.status == 202, answer.body


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[UiWorld]:
    # The subscriber accepts the first event, answers 500 to the second, and accepts everything after.
    async with Sink(Reply(200), Reply(500, body=b"database unavailable"), default=Reply(200)) as sink:
        settings = GatewaySettings(port=0, drain_seconds=1.0, allow_unknown_types=True, api_token=TOKEN)
        standalone = await start_standalone([_manifests(tmp_path / "manifests", sink)], settings, watch=False)
        try:
            namespace = standalone.gateway.messages.subscriptions()[0][0]
            world = UiWorld(standalone, sink, namespace)
            for event_id, status in (
                (DELIVERED_ID, MessageStatus.DELIVERED),
                (FAILED_ID, MessageStatus.DROPPED),
            ):
                await _publish(standalone.url, event_id)
                await eventually(
                    lambda event_id=event_id: world.message(event_id),  # type: ignore[misc]
                    until=lambda record, status=status: record.status is status,  # type: ignore[misc]
                    what=f"{event_id} {status}",
                )
            yield world
        finally:
            await standalone.stop()


def chromium_executable() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (this tier drives Debian's chromium)")
    return str(CHROMIUM)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh chromium profile; never a downloaded browser."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium_executable(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(browser: BrowserContext) -> Page:
    return browser.pages[0] if browser.pages else await browser.new_page()


async def sign_in(page: Page, world: UiWorld) -> None:
    """Open the page, land on the sign-in form, sign in with the API token."""
    await page.goto(f"{world.url}/ui/")
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Subscriptions", level=1).wait_for()
