"""messages: the message log, paged over HTTP, and its memory per message (memory bus).

* Paging: a standalone gateway (in this process, loopback port) with one pull subscription holds N
  messages (10,000 at full size; pull, so nothing is delivered meanwhile and the log only grows). The
  client walks the whole log page by page (100 per page) with the cursor and times each page. The
  baseline is in the same walk: the median of the first 10 pages; the figure is the median of the last
  10 pages over it (1.0 = flat: a page deep in the log costs what the first one does).
* Memory: N delivered messages (each with its parsed event, about 1 KiB of data, kept for resend, and
  one attempt) recorded into a fresh store through the recorder; tracemalloc's growth, events
  included, divided by N.
"""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from tests.support.keys import sub_key

from bench.context import Context, envelope, goal
from bench.stats import spread
from openconnector.ce import CloudEvent
from openconnector.delivery.attempts import Attempt
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.delivery.target import DeliveryTarget
from openconnector.gateway.core import GatewaySettings
from openconnector.messages.recorder import MessageRecorder
from openconnector.messages.store import MemoryMessageStore
from openconnector.standalone import start_standalone

NAME = "messages"
NAMESPACE = "bench"
TYPE = "nl.bench.message.logged"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:bench"
PAGE = 100
EDGE_PAGES = 10
GOAL_RATIO = 2.0


def _count(ctx: Context) -> int:
    return 1_000 if ctx.config.name == "tiny" else 10_000


def _event(n: int) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": f"bench-{n}", "type": TYPE, "source": SOURCE,
        "subject": f"zaak-{n}", "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
    }  # fmt: skip
    return CloudEvent(attributes, {"n": n, "text": "x" * 1000})


def _manifests() -> list[dict[str, Any]]:
    meta = {"namespace": NAMESPACE}
    return [
        {"apiVersion": "openconnector.nl/v1alpha1", "kind": "Event", "metadata": {"name": "logged", **meta},
         "spec": {"type": TYPE, "source": SOURCE}},
        {"apiVersion": "openconnector.nl/v1alpha1", "kind": "EventSubscription",
         "metadata": {"name": "log", **meta},
         "spec": {"eventType": TYPE, "endpoint": "http://127.0.0.1:9/unused", "style": "pull"}},
    ]  # fmt: skip


async def _walk(url: str, session: aiohttp.ClientSession) -> list[float]:
    """Seconds per page, first page first."""
    times: list[float] = []
    cursor: str | None = None
    while True:
        query = f"?limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
        begin = time.perf_counter()
        async with session.get(url + query) as response:
            body = await response.json()
        times.append(time.perf_counter() - begin)
        cursor = body["nextCursor"]
        if cursor is None:
            return times


async def _paging(ctx: Context, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-messages-") as scratch:
        directory = Path(scratch)
        (directory / "all.yaml").write_text(yaml.safe_dump_all(_manifests()))
        settings = GatewaySettings(port=0, drain_seconds=1.0, message_max=count)
        gateway = await start_standalone([directory], settings, watch=False)
        try:
            for start in range(0, count, 100):
                await gateway.gateway.publish(
                    [_event(n) for n in range(start, min(start + 100, count))], NAMESPACE
                )
            url = f"{gateway.url}/api/v1alpha1/subscriptions/{NAMESPACE}/log/messages"
            ratios: list[float] = []
            first: list[float] = []
            last: list[float] = []
            pages = 0
            async with aiohttp.ClientSession() as session:
                for _ in range(max(1, ctx.config.repeats)):
                    times = await _walk(url, session)
                    pages = len(times)
                    head = statistics.median(times[:EDGE_PAGES])
                    tail = statistics.median(times[-EDGE_PAGES:])
                    first.append(head * 1000)
                    last.append(tail * 1000)
                    ratios.append(tail / head)
        finally:
            await gateway.stop()
    return {"pages": pages, "first_ms": spread(first), "last_ms": spread(last), "ratio": spread(ratios)}


def _memory(count: int) -> dict[str, Any]:
    target = DeliveryTarget(key=sub_key(f"{NAMESPACE}/log"), url="http://127.0.0.1:9/x")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # The store keeps each parsed event alive (for resend and pull) after its request ends: counted.
        events = [_event(n) for n in range(count)]
        store = MemoryMessageStore(max_messages=count)
        recorder = MessageRecorder(store, lambda key: target)
        for start in range(0, count, 100):
            recorder.record_stored([(target.key, e) for e in events[start : start + 100]], now=time.time())
        for event in events:
            attempt = Attempt("r", event.id, 1, time.time(), 200, 12.5, None, "success")
            recorder.on_attempt(target.key, attempt)
            recorder.on_outcome(target.key, event.id, FinalOutcome.DELIVERED, None)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {"messages": count, "bytes_per_message": used / count, "event_data_bytes": 1000}


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    count = _count(ctx)
    paging = await _paging(ctx, count)
    memory = _memory(count)
    ratio = paging["ratio"]["median"]
    ctx.say(
        f"message log: {count:,} messages in {paging['pages']} pages of {PAGE}; last {EDGE_PAGES} pages "
        f"{paging['last_ms']['median']:.2f} ms vs first {EDGE_PAGES} {paging['first_ms']['median']:.2f} ms "
        f"→ ratio {ratio:.2f} (1.0 = flat)"
    )
    ctx.say(
        f"message store memory: {memory['bytes_per_message']:,.0f} bytes per delivered message "
        f"(event with {memory['event_data_bytes']} bytes of data kept for resend, one attempt)"
    )
    goals = [
        goal(
            "message log paging stays flat",
            f"last pages / first pages ≤ {GOAL_RATIO}",
            ratio,
            met=ratio is not None and ratio <= GOAL_RATIO,
            unit="×",
        )
    ]
    return envelope(
        NAME, ctx, started, count=count, page_size=PAGE, paging=paging, memory=memory, goals=goals
    )
